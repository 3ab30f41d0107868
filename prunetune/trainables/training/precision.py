"""Precision in one place: the training autocast context, the gradient scaler, and the
conversion of a finished model to its inference precision. Free when off (fp32).

``sparse24`` serves the surviving encoder linears with 2:4 semi-structured sparsity (two
non-zeros in every four consecutive weights of a row, fp16, CUDA compute capability 8.0+):
it zeroes half of the survivors, so it changes the model, and accuracy is measured on it.
"""

from __future__ import annotations

import contextlib
import warnings

import torch
from torch import nn

from prunetune.errors import DeviceError
from prunetune.metrics import SPARSE24_LAYERS
from prunetune.trainables.measure.size import prunable_linears

_AUTOCAST_DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16}
#: 2:4 semi-structured kernels exist from Ampere (compute capability 8.0) on.
SPARSE24_MIN_CAPABILITY = (8, 0)
#: Rows x columns of which an fp16 2:4 weight must be a multiple, per backend (torch.sparse's constraints).
SPARSE24_FP16_TILE = {"cusparselt": (16, 16), "cutlass": (32, 64)}


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
    """Refuse, with the reason, a precision PyTorch eager cannot serve on this device."""
    if precision == "int8":
        check_torch_int8()
    if precision == "int8" and device.type != "cpu":
        raise DeviceError(
            "trial.inference_precision = 'int8' is dynamic quantisation for CPU inference, "
            f"but this worker runs on {device.type}; use fp16 or bf16 on GPUs"
        )
    if precision == "sparse24":
        check_semi_structured_device(device)


def check_torch_int8() -> None:
    """int8 in PyTorch is ``torch.ao`` dynamic quantisation: deprecated in torch 2.13 and announced
    for removal. Refuse clearly, naming the way out, on a torch that no longer has it."""
    quantization = getattr(getattr(torch, "ao", None), "quantization", None)
    if quantization is None or not hasattr(quantization, "quantize_dynamic"):
        raise DeviceError(
            f"trial.inference_precision = 'int8' with trial.runtime = 'torch' uses torch.ao dynamic quantisation, "
            f"which torch {torch.__version__} no longer has; use trial.runtime = 'onnxruntime' (ONNX Runtime's "
            "dynamic int8) or 'openvino' (NNCF's static int8), or a torch release before its removal")


def check_semi_structured_device(device: torch.device) -> None:
    """2:4 sparse kernels (cuSPARSELt / CUTLASS) need a CUDA GPU of compute capability 8.0 or newer."""
    required = ".".join(map(str, SPARSE24_MIN_CAPABILITY))
    if device.type != "cuda":
        raise DeviceError(
            f"trial.inference_precision = 'sparse24' needs a CUDA GPU of compute capability >= {required} "
            f"(Ampere or newer) for 2:4 semi-structured sparse kernels, but this worker runs on {device}; "
            "use fp32, bf16 or int8 on CPU workers"
        )
    capability = torch.cuda.get_device_capability(device)
    if capability < SPARSE24_MIN_CAPABILITY:
        raise DeviceError(
            f"trial.inference_precision = 'sparse24' needs compute capability >= {required} for 2:4 "
            f"semi-structured sparse kernels, but {device} ({torch.cuda.get_device_name(device)}) has "
            f"{capability[0]}.{capability[1]}; use fp16 or bf16 on this GPU"
        )


def semi_structured_mask(weight: torch.Tensor) -> torch.Tensor:
    """2:4 mask of a 2-D weight: in every group of 4 consecutive inputs of a row, True at the
    2 largest magnitudes (ties broken by position)."""
    rows, cols = weight.shape
    if cols % 4:
        raise ValueError(f"2:4 sparsity needs an input width divisible by 4, got a {rows}x{cols} weight")
    groups = weight.detach().abs().reshape(rows, cols // 4, 4)
    mask = torch.zeros(groups.shape, dtype=torch.bool, device=weight.device)
    mask.scatter_(-1, groups.topk(2, dim=-1).indices, True)
    return mask.reshape(rows, cols)


def semi_structured_shape_ok(shape: torch.Size | tuple[int, int], *, cusparselt: bool) -> bool:
    """Whether the fp16 2:4 kernels accept a weight of ``shape`` (positive multiples of their tile)."""
    rows, cols = SPARSE24_FP16_TILE["cusparselt" if cusparselt else "cutlass"]
    return shape[0] % rows == 0 and shape[1] % cols == 0 and shape[0] > 0 and shape[1] > 0


def _cusparselt_available() -> bool:
    return bool(torch.backends.cusparselt.is_available())


def sparse24_linears(model: nn.Module) -> list[nn.Linear]:
    """The surviving encoder linears that the 2:4 kernels accept; the others stay dense."""
    cusparselt = _cusparselt_available()
    return [linear for linear in prunable_linears(model) if semi_structured_shape_ok(linear.weight.shape, cusparselt=cusparselt)]


@torch.no_grad()
def prune_semi_structured(model: nn.Module) -> int:
    """Zero all but the 2 largest of every 4 weights in each convertible linear, in place.

    Returns how many linears were pruned. Works on any device (it is the part of sparse24
    that changes the model, so the saved model and the measured one agree).
    """
    linears = sparse24_linears(model)
    for linear in linears:
        linear.weight.mul_(semi_structured_mask(linear.weight).to(linear.weight.dtype))
    return len(linears)


def prepare_for_inference_precision(model: nn.Module, precision: str) -> dict[str, int]:
    """Make, in place, the changes a precision makes to the weights themselves (2:4 pruning for
    sparse24), so that the saved model is the one measured; returns metrics about them."""
    if precision == "sparse24":
        return {SPARSE24_LAYERS: prune_semi_structured(model)}
    return {}


def _to_semi_structured(model: nn.Module, device: torch.device) -> nn.Module:
    from torch.sparse import (
        SparseSemiStructuredTensorCUTLASS,
        to_sparse_semi_structured,
    )

    model = model.to(device=device, dtype=torch.float16)
    prune_semi_structured(model)
    # to_sparse_semi_structured picks cuSPARSELt; builds without it fall back to CUTLASS.
    convert = to_sparse_semi_structured if _cusparselt_available() else SparseSemiStructuredTensorCUTLASS.from_dense
    for linear in sparse24_linears(model):
        linear.weight = nn.Parameter(convert(linear.weight.detach().contiguous()), requires_grad=False)
    return model


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
    CPUs with no compile step. torch 2.13 deprecates it in favour of torchao, whose CPU int8
    route needs torch.compile (pt2e + X86InductorQuantizer) and whose eager int8 is slower
    than fp32 on x86; so it stays, behind :func:`check_torch_int8`, and
    ``trial.runtime: onnxruntime`` and ``openvino`` are the int8 routes that do not depend on it.
    """
    check_inference_precision(precision, device)
    model = model.eval()
    if precision == "fp32":
        return model.float()
    if precision == "sparse24":
        return _to_semi_structured(model, device)
    if precision in _AUTOCAST_DTYPES:
        return model.to(_AUTOCAST_DTYPES[precision])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.ao eager quantisation announces its deprecation
        return torch.ao.quantization.quantize_dynamic(model.float().cpu(), {nn.Linear}, dtype=torch.qint8)
