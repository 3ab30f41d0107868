"""OpenVINO on the CPU: the exported graph at fp32, or int8 by NNCF post-training quantisation.

- The model is the checked ONNX graph read by OpenVINO and saved as its IR
  (``openvino_model.xml`` and ``.bin``): the files optimum-intel's ``OVModelFor...`` classes
  load, and ``openvino`` alone serves.
- int8 is NNCF's post-training quantisation for transformers (``ModelType.TRANSFORMER``:
  int8 weights and activations, SmoothQuant and bias correction), calibrated on the trial's
  training texts (``trial.calibration_samples`` of them). The dense teacher's and the latency
  tables' models calibrate on random tokens: only their latency is read, which does not
  depend on the calibration.
- The CPU plugin runs an fp32 model in bf16 on CPUs with AMX or AVX-512 BF16 unless told not
  to: the session pins ``INFERENCE_PRECISION_HINT`` to f32, so that fp32 and the float parts of
  int8 are what their names say on every CPU.
"""

from __future__ import annotations

import contextlib
import io
import logging
from pathlib import Path
from typing import TYPE_CHECKING

from prunetune.trainables.runtimes._base import Calibration, FileRuntime, Served, optimum_example
from prunetune.trainables.runtimes._graph_names import TOKEN_TYPES

if TYPE_CHECKING:
    import torch

IR_FILE = "openvino_model.xml"
WEIGHTS_FILE = "openvino_model.bin"
#: Random calibration feeds where only latency is read (the teacher, latency tables).
RANDOM_CALIBRATION = 8


def port_name(port) -> str:
    """The graph's own name of an input or output: OpenVINO may give a port the names of the
    tensors it merged into it too (an input and the cast of it, ``/inner/Cast_output_0``)."""
    names = sorted(port.get_names())
    return next((name for name in names if not name.startswith("/")), port.get_any_name())


class OvModel:
    """A compiled OpenVINO model that is called like a transformers model with a task head
    (see :class:`prunetune.trainables.runtimes.onnx_runtime.OrtModel`)."""

    training = False

    def __init__(self, path: str | Path, *, threads: int | None = None):
        import openvino
        import torch

        core = openvino.Core()
        self.path = Path(path)
        self.compiled = core.compile_model(core.read_model(str(path)), "CPU", {
            "INFERENCE_NUM_THREADS": int(threads or torch.get_num_threads()),
            "PERFORMANCE_HINT": "LATENCY", "NUM_STREAMS": 1, "INFERENCE_PRECISION_HINT": "f32"})
        self.request = self.compiled.create_infer_request()
        self.input_names = [port_name(port) for port in self.compiled.inputs]
        self.output_names = [port_name(port) for port in self.compiled.outputs]

    def __call__(self, **inputs: "torch.Tensor"):
        import torch

        from prunetune.trainables.runtimes.onnx_runtime import _Output

        if TOKEN_TYPES in self.input_names and TOKEN_TYPES not in inputs:
            inputs = {**inputs, TOKEN_TYPES: torch.zeros_like(inputs["input_ids"])}
        feeds = {name: inputs[name].detach().cpu().numpy() for name in self.input_names}
        results = self.request.infer(feeds)
        return _Output({name: torch.from_numpy(results[port].copy()).float()
                        for name, port in zip(self.output_names, self.compiled.outputs)})

    def eval(self) -> "OvModel":
        return self

    def train(self, mode: bool = True) -> "OvModel":
        return self


def quantize_int8(model, calibration: Calibration, input_names: list[str]):
    """NNCF's post-training int8 quantisation of an OpenVINO model, calibrated on ``calibration``."""
    import nncf
    import numpy

    def feed(example: dict) -> dict:
        length = example["input_ids"].shape[-1]
        zeros = numpy.zeros((1, length), dtype=numpy.int64)
        return {name: numpy.asarray(example.get(name, zeros), dtype=numpy.int64).reshape(1, -1) for name in input_names}

    nncf.set_log_level(logging.ERROR)  # its notes, once per quantisation
    items = [feed(example) for example in calibration]
    # Its progress bars (rich, on stdout, with no switch) would fill a trial's log at every rung.
    with contextlib.redirect_stdout(io.StringIO()):
        return nncf.quantize(model, nncf.Dataset(items), model_type=nncf.ModelType.TRANSFORMER,
                             subset_size=len(items))


def random_calibration(model, count: int = RANDOM_CALIBRATION, seq_len: int = 32) -> list[dict]:
    """Random token feeds of the graph's inputs: enough to quantise a model whose latency alone is read."""
    from prunetune.trainables.runtimes._graph import sample_inputs

    return [{name: value.numpy() for name, value in sample_inputs(model, batch_size=1, seq_len=seq_len,
                                                                 seed=seed).items()} for seed in range(count)]


class OpenVino(FileRuntime):
    name = "openvino"
    label = "OpenVINO (CPU)"
    precisions = {"cpu": ("fp32", "int8")}
    packages = ("openvino", "nncf")
    install = "pip install 'prunetune[openvino]' (or openvino nncf)"
    shipped_files = (IR_FILE, WEIGHTS_FILE)

    def build(self, model, directory: Path, *, precision: str, device, calibration: Calibration | None) -> None:
        import openvino

        from prunetune.trainables.runtimes._graph import checked_graph

        directory.mkdir(parents=True, exist_ok=True)
        calibration = calibration if calibration is not None or precision != "int8" else random_calibration(model)
        onnx = checked_graph(model, directory / "model-fp32.onnx")
        graph = openvino.Core().read_model(str(onnx))
        if precision == "int8":
            graph = quantize_int8(graph, calibration, [port_name(port) for port in graph.inputs])
        openvino.save_model(graph, str(directory / IR_FILE), compress_to_fp16=False)
        onnx.unlink()

    def open(self, directory: Path, *, precision: str, device, threads: int | None) -> Served:
        path = Path(directory) / IR_FILE
        return Served(OvModel(path, threads=threads), device, self.name, precision, path)

    def usage(self, precision: str, pipeline_task: str) -> str:
        return (f"`{IR_FILE}` and `{WEIGHTS_FILE}` in this directory are the OpenVINO model that was measured "
                f"({precision}). `{self.name}/` holds them again with the tokenizer and a config that need no remote "
                f"code; they load with `openvino` alone (`openvino.Core().compile_model(\"DIR/{self.name}/{IR_FILE}\", "
                "\"CPU\")`), or with optimum-intel:\n\n"
                + optimum_example("optimum.intel", "OVModel", pipeline_task, f"DIR/{self.name}"))
