"""Serving runtimes: one module per runtime, and a registry by name (``trial.runtime``).

A runtime declares the precisions it serves on each device, the packages it needs, how it
serves a compacted model and the dense teacher, what it ships and how the model card says to
load it (:mod:`._base`). To add one, write its module and add an instance to
:data:`RUNTIMES`; the contract test (``tests/trainables/test_runtimes_contract.py``) then runs
it over every family and task kind.

Importing this package does not import torch.
"""

from __future__ import annotations

from prunetune.errors import ConfigError
from prunetune.trainables.runtimes._base import Calibration, FileRuntime, Runtime, Served
from prunetune.trainables.runtimes._graph_names import ONNX_FILE, ONNX_TOLERANCE
from prunetune.trainables.runtimes.onnx_runtime import OnnxRuntime
from prunetune.trainables.runtimes.openvino_runtime import OpenVino
from prunetune.trainables.runtimes.torch_eager import TorchEager

#: Registry: runtime name -> the runtime. One line per runtime.
RUNTIMES: dict[str, Runtime] = {runtime.name: runtime for runtime in (TorchEager(), OnnxRuntime(), OpenVino())}

#: What ``speedup`` divides by: the dense teacher at fp32 in this runtime (the metric contract).
REFERENCE_RUNTIME = "torch"
REFERENCE_PRECISION = "fp32"


def runtime_of(name: str) -> Runtime:
    problems = pairing_problems(name, "fp32")
    if name not in RUNTIMES:
        raise ConfigError(problems)
    return RUNTIMES[name]


def is_reference(runtime: str, precision: str) -> bool:
    """Whether a student served so is timed against the same teacher as ``speedup``'s."""
    return (runtime, precision) == (REFERENCE_RUNTIME, REFERENCE_PRECISION)


def pairing_problems(runtime: str, precision: str) -> list[str]:
    """Why ``runtime`` can never serve ``precision`` (configuration validation: the same everywhere)."""
    if runtime not in RUNTIMES:
        return [f"trial.runtime = {runtime!r}: expected one of {', '.join(RUNTIMES)}"]
    return RUNTIMES[runtime].pairing_problems(precision)


def runtime_problems(runtime: str, precision: str) -> list[str]:
    """Why ``runtime`` cannot serve ``precision`` on this machine (empty when it can): checked where a
    trial runs, before any work starts; the driver that only reads results needs no runtime."""
    return pairing_problems(runtime, precision) or RUNTIMES[runtime].installed_problems()


#: Packages whose versions move every figure, whatever the runtime.
_FIGURE_PACKAGES = ("torch", "transformers", "onnxruntime")


def software_versions(runtime: str) -> str:
    """``torch 2.13.0, transformers 5.23.0, onnxruntime 1.23.2, ...``: what the figures were measured
    with (results and the model card), the runtime's own packages included."""
    import importlib.metadata

    names = dict.fromkeys([*_FIGURE_PACKAGES, *RUNTIMES[runtime].packages])
    found = []
    for name in names:
        try:
            found.append(f"{name} {importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            continue  # a runtime's package under another distribution name (onnxruntime-gpu): its own list
    return ", ".join(found)


def check_runtime(runtime: str, precision: str) -> None:
    problems = runtime_problems(runtime, precision)
    if problems:
        raise ConfigError(problems)


__all__ = ["ONNX_FILE", "ONNX_TOLERANCE", "REFERENCE_PRECISION", "REFERENCE_RUNTIME", "RUNTIMES", "Calibration",
           "FileRuntime", "Runtime", "Served", "check_runtime", "is_reference", "pairing_problems", "runtime_of",
           "runtime_problems", "software_versions"]
