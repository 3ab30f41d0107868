"""The runtime a model is served in: PyTorch eager, or ONNX Runtime (fp32 or dynamic int8).

A trial measures its student in the runtime and precision the user will deploy
(``trial.runtime``, ``trial.inference_precision``), so the front shows what they will get.
:func:`serve` turns a compacted PyTorch model into a callable that takes the tokenizer's
tensors and returns an object with ``.logits``, whatever the runtime, so that quality
and latency are measured by the same code for every runtime.

ONNX Runtime:

- The graph is exported with the TorchScript exporter (``dynamo=False``): the
  torch.export-based one needs the onnxscript package. Inputs ``input_ids``,
  ``attention_mask`` and, for families that tell segments apart (BERT, ELECTRA),
  ``token_type_ids`` (batch and sequence axes dynamic); outputs the task head's own
  (``logits``, or ``start_logits`` and ``end_logits``), named as transformers names them, so
  that the graph is fed and read as the PyTorch model is. Layers with
  different head counts and FFN widths export as they are: each layer's reshapes use its
  own sizes.
- int8 is ONNX Runtime's dynamic quantisation (int8 weights, activations quantised at run
  time), the established CPU route for BERT-class encoders.
- Sessions run with ``session.intra_op.allow_spinning = 0``: ONNX Runtime's worker threads
  otherwise spin after each run and slow down whatever runs next on those cores (a PyTorch
  model timed right after a session, in alternating rounds, came out about 40% slower).
  Turning spinning off costs the session little at batch 1 and keeps the comparison fair.
"""

from __future__ import annotations

import shutil
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from filelock import FileLock
from torch import nn

from prunetune.errors import ModelError
from prunetune.trainables.measure.runtime_checks import (
    ONNX_FILE,
    ONNX_TOLERANCE,
    check_runtime,
)

ONNX_INPUTS = ("input_ids", "attention_mask")
TOKEN_TYPES = "token_type_ids"
ONNX_OPSET = 17


# --------------------------------------------------------------------------- ONNX Runtime


class _Output(dict):
    """The graph's outputs by name, read as attributes too (``.logits``), like transformers' outputs."""

    def __getattr__(self, name: str) -> torch.Tensor:
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

    def __init__(self, path: str | Path, *, threads: int | None = None):
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads or torch.get_num_threads()
        options.inter_op_num_threads = 1
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.log_severity_level = 3  # the optimiser's notes about unused initialisers are not errors
        self.path = Path(path)
        self.session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.input_names = [node.name for node in self.session.get_inputs()]
        self.output_names = [node.name for node in self.session.get_outputs()]

    def __call__(self, **inputs: torch.Tensor) -> _Output:
        if TOKEN_TYPES in self.input_names and TOKEN_TYPES not in inputs:
            # One segment, as a transformers model assumes when it is given no token types.
            inputs = {**inputs, TOKEN_TYPES: torch.zeros_like(inputs["input_ids"])}
        feeds = {name: inputs[name].detach().cpu().numpy() for name in self.input_names}
        outputs = self.session.run(self.output_names, feeds)
        return _Output({name: torch.from_numpy(value) for name, value in zip(self.output_names, outputs)})

    def eval(self) -> "OrtModel":
        return self

    def train(self, mode: bool = True) -> "OrtModel":
        return self


class _HeadOutputs(nn.Module):
    """``(input_ids, attention_mask[, token_type_ids]) -> the head's outputs``: the ONNX graph's signature."""

    def __init__(self, inner: nn.Module, input_names: list[str], output_names: list[str]):
        super().__init__()
        self.inner, self.input_names, self.output_names = inner, input_names, output_names

    def forward(self, *inputs):
        outputs = self.inner(**dict(zip(self.input_names, inputs)))
        return tuple(outputs[name] for name in self.output_names)


def onnx_input_names(model: nn.Module) -> list[str]:
    """The graph's inputs: token types only for families that tell segments apart."""
    from prunetune.trainables.measure.latency import uses_token_types

    return [*ONNX_INPUTS, TOKEN_TYPES] if uses_token_types(model) else list(ONNX_INPUTS)


def sample_inputs(model: nn.Module, *, batch_size: int, seq_len: int, seed: int) -> dict[str, torch.Tensor]:
    """Random inputs the graph takes, padding in the first row and, where the family has token
    types, a second segment in the second half of each row (a pair, a question's context)."""
    generator = torch.Generator().manual_seed(seed)
    inputs = {"input_ids": torch.randint(0, int(model.config.vocab_size), (batch_size, seq_len), generator=generator)}
    inputs["attention_mask"] = torch.ones_like(inputs["input_ids"])
    inputs["attention_mask"][0, seq_len // 2:] = 0
    if TOKEN_TYPES in onnx_input_names(model):
        inputs[TOKEN_TYPES] = torch.zeros_like(inputs["input_ids"])
        inputs[TOKEN_TYPES][:, seq_len // 2:] = 1
    return inputs


def head_output_names(model: nn.Module) -> list[str]:
    """The outputs of the model's task head (``logits``, or ``start_logits`` and ``end_logits``)."""
    from prunetune.trainables.families._spec import head_of
    from prunetune.trainables.families.compaction import OUTPUTS_OF_HEAD

    return list(OUTPUTS_OF_HEAD[head_of(type(model).__name__)])


def export_onnx(model: nn.Module, path: str | Path, *, seq_len: int = 16) -> Path:
    """Write ``model`` (fp32, CPU) as an ONNX graph with dynamic batch and sequence axes.

    The trace runs on a batch of two with padding in one row (and two segments where the family
    has token types), so the attention-mask and token-type paths are part of the graph.
    """
    from prunetune.trainables.families import family_of
    from prunetune.trainables.families._modeling import fuse_model

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model = fuse_model(model.float().cpu().eval(), family_of(model))  # one matrix per fused projection
    inputs = sample_inputs(model, batch_size=2, seq_len=seq_len, seed=0)
    input_names = list(inputs)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation and tracer notes
        output_names = head_output_names(model)
        axes = {name: {0: "batch", 1: "sequence"} for name in input_names}
        output_axes = {0: "batch", 1: "sequence"} if _per_token(model) else {0: "batch"}
        axes.update({name: output_axes for name in output_names})
        torch.onnx.export(
            # In eval mode: the exporter puts the wrapper back in its own mode afterwards, and a
            # fresh module is in training mode, which would turn the model's dropout on.
            _HeadOutputs(model, input_names, output_names).eval(), tuple(inputs.values()), str(path),
            input_names=input_names, output_names=output_names, opset_version=ONNX_OPSET, dynamo=False,
            dynamic_axes=axes,
        )
    return path


def _per_token(model: nn.Module) -> bool:
    """Whether the head outputs one row per token (tagging, QA): their sequence axis is dynamic too."""
    from prunetune.trainables.families._spec import head_of

    return head_of(type(model).__name__) != "ForSequenceClassification"


def quantize_onnx_int8(source: str | Path, target: str | Path) -> Path:
    """ONNX Runtime's dynamic int8 quantisation of ``source`` (int8 weights, activations at run time)."""
    import logging

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


def build_onnx(model: nn.Module, directory: str | Path, precision: str) -> Path:
    """``directory/model.onnx``: the model exported, then quantised when ``precision`` is int8.

    The fp32 graph is checked against PyTorch before anything else uses it.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / ONNX_FILE
    if precision == "fp32":
        export_onnx(model, target)
        check_onnx_matches(model, target)
        return target
    fp32 = export_onnx(model, directory / "model-fp32.onnx")
    check_onnx_matches(model, fp32)
    quantize_onnx_int8(fp32, target)
    fp32.unlink()
    return target


@torch.no_grad()
def onnx_difference(model: nn.Module, path: str | Path, *, seq_len: int = 24, batch_size: int = 3) -> float:
    """Largest |logit difference| between ``model`` (PyTorch) and the graph at ``path``, on padded random inputs."""
    from prunetune.trainables.families.compaction import head_outputs

    model = model.float().cpu().eval()
    inputs = sample_inputs(model, batch_size=batch_size, seq_len=seq_len, seed=1)
    expected = head_outputs(model(**inputs))
    actual = head_outputs(OrtModel(path, threads=1)(**inputs))
    return float((expected - actual).abs().max())


def check_onnx_matches(model: nn.Module, path: str | Path) -> float:
    difference = onnx_difference(model, path)
    if difference > ONNX_TOLERANCE:
        raise ModelError(f"{path}: ONNX logits differ from PyTorch by up to {difference:.2e} "
                         f"(tolerance {ONNX_TOLERANCE:.0e})")
    return difference


# --------------------------------------------------------------------------- serving


@dataclass
class Served:
    """A model ready to serve: what is measured, the device it runs on, and the file it ships as."""

    model: Any  # nn.Module or OrtModel: called with the tokenizer's tensors, returns .logits
    device: torch.device
    runtime: str
    precision: str
    artifact: Path | None = None  # the ONNX file measured (onnxruntime)


def serve(model: nn.Module, *, runtime: str, precision: str, device: torch.device, threads: int | None = None,
          work_dir: str | Path | None = None) -> Served:
    """``model`` (compacted, fp32) in ``runtime`` at ``precision``; the input model may be modified.

    For onnxruntime the graph is written to ``work_dir/model.onnx`` (a temporary directory
    when None is given is the caller's to remove).
    """
    from prunetune.trainables.training.precision import to_inference_precision

    check_runtime(runtime, precision)
    if runtime == "torch":
        serving_device = torch.device("cpu") if precision == "int8" else device
        return Served(to_inference_precision(model, precision, device), serving_device, runtime, precision)
    if work_dir is None:
        raise ValueError("serve(runtime='onnxruntime') needs a work_dir for the ONNX file")
    artifact = build_onnx(model, work_dir, precision)
    return Served(OrtModel(artifact, threads=threads), torch.device("cpu"), runtime, precision, artifact)


def cached_teacher_graph(load_teacher, cache_dir: str | Path, precision: str) -> Path:
    """The dense teacher (``load_teacher()``) as an ONNX graph at ``precision``, built once per
    teacher cache and reused by every trial of the node."""
    directory = Path(cache_dir) / "runtimes" / f"onnxruntime-{precision}"
    directory.mkdir(parents=True, exist_ok=True)
    with FileLock(str(directory / ".lock")):
        if not (directory / ONNX_FILE).is_file():
            staging = directory / "staging"
            shutil.rmtree(staging, ignore_errors=True)
            build_onnx(load_teacher(), staging, precision)
            (staging / ONNX_FILE).replace(directory / ONNX_FILE)
            shutil.rmtree(staging, ignore_errors=True)
    return directory / ONNX_FILE


def serve_teacher(load_teacher, *, runtime: str, precision: str, device: torch.device, threads: int | None,
                  cache_dir: str | Path) -> Served:
    """The dense teacher in ``runtime`` at ``precision`` (its ONNX graphs cached beside the teacher).

    2:4 sparsity would prune the teacher: its dense counterpart is the teacher at fp16.
    """
    if precision == "sparse24":
        precision = "fp16"
    if runtime == "torch":
        return serve(load_teacher(), runtime=runtime, precision=precision, device=device, threads=threads)
    path = cached_teacher_graph(load_teacher, cache_dir, precision)
    return Served(OrtModel(path, threads=threads), torch.device("cpu"), runtime, precision, path)
