"""ONNX Runtime: the exported graph at fp32 or dynamic int8 on the CPU, fp32 or fp16 through
the CUDA provider where a GPU and ``onnxruntime-gpu`` are present.

- int8 is ONNX Runtime's dynamic quantisation (int8 weights, activations quantised at run
  time), the established CPU route for BERT-class encoders.
- fp16 is the model traced at fp16 on the GPU, served by the CUDA execution provider.
- Sessions run with ``session.intra_op.allow_spinning = 0``: ONNX Runtime's worker threads
  otherwise spin after each run and slow down whatever runs next on those cores (a PyTorch
  model timed right after a session, in alternating rounds, came out about 40% slower).
  Turning spinning off costs the session little at batch 1 and keeps the comparison fair.
- A model directory holds ``model.onnx`` beside ``config.json`` and the tokenizer: the layout
  optimum's ``ORTModelFor...`` classes load.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

from prunetune.trainables.runtimes._base import Calibration, FileRuntime, Served, optimum_example
from prunetune.trainables.runtimes._graph_names import ONNX_FILE, TOKEN_TYPES

if TYPE_CHECKING:
    import torch

CUDA_PROVIDER = "CUDAExecutionProvider"


class _Output(dict):
    """The graph's outputs by name, read as attributes too (``.logits``), like transformers' outputs."""

    def __getattr__(self, name: str) -> "torch.Tensor":
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None


class OrtModel:
    """An ONNX Runtime session that is called like a transformers model with a task head.

    ``model(input_ids=..., attention_mask=..., token_type_ids=...)`` returns an object with the
    head's outputs (``.logits``, or ``.start_logits`` and ``.end_logits``; float32 CPU tensors);
    inputs the graph does not take are ignored. ``eval``/``train`` exist so that the measuring
    code can treat it as a module.
    """

    training = False

    def __init__(self, path: str | Path, *, threads: int | None = None, device: "torch.device | None" = None):
        import onnxruntime
        import torch

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads or torch.get_num_threads()
        options.inter_op_num_threads = 1
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.log_severity_level = 3  # the optimiser's notes about unused initialisers are not errors
        on_gpu = device is not None and device.type == "cuda"
        providers = [(CUDA_PROVIDER, {"device_id": device.index or 0}), "CPUExecutionProvider"] if on_gpu else [
            "CPUExecutionProvider"]
        self.path = Path(path)
        self.session = onnxruntime.InferenceSession(str(path), options, providers=providers)
        self.input_names = [node.name for node in self.session.get_inputs()]
        self.output_names = [node.name for node in self.session.get_outputs()]

    def __call__(self, **inputs: "torch.Tensor") -> _Output:
        import torch

        if TOKEN_TYPES in self.input_names and TOKEN_TYPES not in inputs:
            # One segment, as a transformers model assumes when it is given no token types.
            inputs = {**inputs, TOKEN_TYPES: torch.zeros_like(inputs["input_ids"])}
        feeds = {name: inputs[name].detach().cpu().numpy() for name in self.input_names}
        outputs = self.session.run(self.output_names, feeds)
        return _Output({name: torch.from_numpy(value).float() for name, value in zip(self.output_names, outputs)})

    def eval(self) -> "OrtModel":
        return self

    def train(self, mode: bool = True) -> "OrtModel":
        return self


def quantize_onnx_int8(source: str | Path, target: str | Path) -> Path:
    """ONNX Runtime's dynamic int8 quantisation of ``source`` (int8 weights, activations at run time)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # its advice to pre-process logs on the root logger at every call
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            quantize_dynamic(str(source), str(target), weight_type=QuantType.QInt8)
    finally:
        root.setLevel(level)
    return Path(target)


def cuda_provider_available() -> bool:
    import onnxruntime

    return CUDA_PROVIDER in onnxruntime.get_available_providers()


class OnnxRuntime(FileRuntime):
    name = "onnxruntime"
    label = "ONNX Runtime"
    precisions = {"cpu": ("fp32", "int8"), "cuda": ("fp32", "fp16")}
    packages = ("onnx", "onnxruntime")
    install = "pip install onnx onnxruntime (prunetune's own dependencies: reinstall prunetune)"
    shipped_files = (ONNX_FILE,)

    def serving_device(self, precision: str, device: "torch.device") -> "torch.device":
        """The CUDA provider serves fp32 and fp16 on a GPU worker where onnxruntime-gpu is installed;
        everything else is served on the CPU."""
        import torch

        if device.type == "cuda" and precision in self.precisions["cuda"] and (
                precision == "fp16" or cuda_provider_available()):
            return device
        return torch.device("cpu")

    def device_problems(self, precision: str, device: "torch.device") -> list[str]:
        if precision == "fp16" and device.type != "cuda":
            return [f"trial.inference_precision = 'fp16' with trial.runtime = 'onnxruntime' is served by the CUDA "
                    f"provider, but this worker runs on {device.type}; use fp32 or int8 on CPU workers"]
        if precision == "fp16" and not cuda_provider_available():
            return ["trial.inference_precision = 'fp16' with trial.runtime = 'onnxruntime' needs ONNX Runtime's "
                    "CUDA provider, which this onnxruntime lacks: pip install onnxruntime-gpu"]
        return super().device_problems(precision, device)

    def build(self, model, directory: Path, *, precision: str, device, calibration: Calibration | None) -> None:
        from prunetune.trainables.runtimes._graph import checked_graph

        directory.mkdir(parents=True, exist_ok=True)
        target = directory / ONNX_FILE
        if precision == "fp16":
            checked_graph(model, target, fp16_on=device)
        elif precision == "fp32":
            checked_graph(model, target)
        else:  # int8: quantised from the checked fp32 graph
            fp32 = checked_graph(model, directory / "model-fp32.onnx")
            quantize_onnx_int8(fp32, target)
            fp32.unlink()

    def open(self, directory: Path, *, precision: str, device, threads: int | None) -> Served:
        path = Path(directory) / ONNX_FILE
        return Served(OrtModel(path, threads=threads, device=device), device, self.name, precision, path)

    def usage(self, precision: str, pipeline_task: str) -> str:
        return (f"`{ONNX_FILE}` in this directory is the model that was measured (an ONNX graph, {precision}). "
                f"`{self.name}/` holds it again with the tokenizer and a config that need no remote code; it loads with "
                f"`onnxruntime.InferenceSession(\"DIR/{self.name}/{ONNX_FILE}\")` alone (inputs `input_ids`, "
                "`attention_mask` and, where the family has them, `token_type_ids`), or with optimum-onnx:\n\n"
                + optimum_example("optimum.onnxruntime", "ORTModel", pipeline_task, f"DIR/{self.name}"))
