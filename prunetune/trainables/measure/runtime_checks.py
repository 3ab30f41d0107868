"""Which runtime serves which inference precision, and whether it is installed (no torch here:
configuration validation reads it)."""

from __future__ import annotations

import importlib.util

from prunetune.errors import ConfigError

#: The ONNX graph a trial measured, in its model directory and in an export.
ONNX_FILE = "model.onnx"
#: Largest |logit difference| allowed between an fp32 ONNX graph and PyTorch.
ONNX_TOLERANCE = 1e-3

RUNTIMES = ("torch", "onnxruntime")
#: Inference precisions each runtime serves (on the CPU for onnxruntime; see runtime_problems).
RUNTIME_PRECISIONS = {"torch": ("fp32", "fp16", "bf16", "int8", "sparse24"), "onnxruntime": ("fp32", "int8")}


def pairing_problems(runtime: str, precision: str) -> list[str]:
    """Why ``runtime`` can never serve ``precision`` (configuration validation: the same everywhere)."""
    if runtime not in RUNTIMES:
        return [f"trial.runtime = {runtime!r}: expected one of {', '.join(RUNTIMES)}"]
    if precision not in RUNTIME_PRECISIONS[runtime]:
        return [f"trial.inference_precision = {precision!r} with trial.runtime = {runtime!r}: "
                f"{runtime} serves {', '.join(RUNTIME_PRECISIONS[runtime])}"]
    return []


def runtime_problems(runtime: str, precision: str) -> list[str]:
    """Why ``runtime`` cannot serve ``precision`` on this machine (empty when it can): checked where a
    trial runs, before any work starts; the driver that only reads results needs no runtime."""
    problems = pairing_problems(runtime, precision)
    if runtime == "onnxruntime":
        missing = [name for name in ("onnx", "onnxruntime") if importlib.util.find_spec(name) is None]
        if missing:
            problems.append(f"trial.runtime = 'onnxruntime' needs the package(s) {', '.join(missing)}, which are not "
                            "installed here: pip install 'prunetune[onnx]' (or onnx onnxruntime)")
    return problems


def check_runtime(runtime: str, precision: str) -> None:
    problems = runtime_problems(runtime, precision)
    if problems:
        raise ConfigError(problems)
