"""Precision in one place: the training autocast context, the gradient scaler, and the
conversion of a finished model to its inference precision. Free when off (fp32)."""

from __future__ import annotations

import contextlib
import warnings

import torch
from torch import nn

from prunetune.errors import DeviceError

_AUTOCAST_DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16}


def resolve_device(spec: str) -> torch.device:
    """``auto`` picks the first CUDA device when there is one (Ray sets CUDA_VISIBLE_DEVICES)."""
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(spec)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise DeviceError(f"trial.device = {spec!r}: no CUDA device is visible to this worker")
    return device


def check_training_precision(precision: str, device: torch.device) -> None:
    """Refuse, with the reason, a training precision this device cannot run well."""
    if precision == "fp16" and device.type != "cuda":
        raise DeviceError(
            f"trial.precision = 'fp16' needs a CUDA GPU (fp16 autocast with a gradient scaler), "
            f"but this worker runs on {device.type}; use bf16 or fp32 on CPU workers"
        )
    if precision == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise DeviceError(
            f"trial.precision = 'bf16': {torch.cuda.get_device_name(device)} has no bfloat16 support; use fp16"
        )


def check_inference_precision(precision: str, device: torch.device) -> None:
    if precision == "int8" and device.type != "cpu":
        raise DeviceError(
            "trial.inference_precision = 'int8' is dynamic quantisation for CPU inference, "
            f"but this worker runs on {device.type}; use fp16 or bf16 on GPUs"
        )


def autocast_context(precision: str, device: torch.device) -> contextlib.AbstractContextManager:
    """Autocast for fp16/bf16 training, a no-op for fp32."""
    dtype = _AUTOCAST_DTYPES.get(precision)
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def grad_scaler(precision: str, device: torch.device) -> torch.amp.GradScaler:
    """Loss scaling only matters for fp16 (bf16 has fp32's exponent range)."""
    return torch.amp.GradScaler(device.type, enabled=precision == "fp16")


def to_inference_precision(model: nn.Module, precision: str, device: torch.device) -> nn.Module:
    """Return the model ready to serve at ``precision`` (the input model may be modified).

    int8 uses torch.ao's dynamic quantisation: it runs fbgemm/onednn int8 kernels on x86
    CPUs with no compile step, which is what a CPU deployment gets today; torchao's
    ``quantize_`` targets torch.compile and GPUs.
    """
    check_inference_precision(precision, device)
    model = model.eval()
    if precision == "fp32":
        return model.float()
    if precision in _AUTOCAST_DTYPES:
        return model.to(_AUTOCAST_DTYPES[precision])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.ao eager quantisation announces its deprecation
        return torch.ao.quantization.quantize_dynamic(model.float().cpu(), {nn.Linear}, dtype=torch.qint8)
