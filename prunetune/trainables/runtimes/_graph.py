"""The ONNX graph of a compacted model, shared by the runtimes that serve from it.

- The graph is exported with the TorchScript exporter (``dynamo=False``): the
  torch.export-based one needs the onnxscript package. Inputs ``input_ids``,
  ``attention_mask`` and, for families that tell segments apart (BERT, ELECTRA),
  ``token_type_ids`` (batch and sequence axes dynamic); outputs the task head's own
  (``logits``, or ``start_logits`` and ``end_logits``), named as transformers names them, so
  that the graph is fed and read as the PyTorch model is, by prunetune, by optimum's
  ``ORTModelFor...`` and by OpenVINO, which reads the same graph. Layers with different head
  counts and FFN widths export as they are: each layer's reshapes use its own sizes.
- Every fp32 graph is checked against PyTorch (ONNX Runtime on padded random inputs)
  before anything else uses it.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import torch
from torch import nn

from prunetune.errors import ModelError
from prunetune.trainables.runtimes._graph_names import (
    FP16_TOLERANCE,
    ONNX_TOLERANCE,
    TOKEN_TYPES,
)

ONNX_INPUTS = ("input_ids", "attention_mask")
ONNX_OPSET = 17


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


def export_onnx(model: nn.Module, path: str | Path, *, seq_len: int = 16, keep_dtype: bool = False) -> Path:
    """Write ``model`` (fp32, CPU; with ``keep_dtype`` as it is, e.g. fp16 on a GPU) as an ONNX
    graph with dynamic batch and sequence axes.

    The trace runs on a batch of two with padding in one row (and two segments where the family
    has token types), so the attention-mask and token-type paths are part of the graph.
    """
    from prunetune.trainables.families import family_of
    from prunetune.trainables.families._modeling import fuse_model

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model = model.eval() if keep_dtype else model.float().cpu().eval()
    model = fuse_model(model, family_of(model))  # one matrix per fused projection
    device = next(model.parameters()).device
    inputs = {name: value.to(device) for name, value in sample_inputs(model, batch_size=2, seq_len=seq_len,
                                                                      seed=0).items()}
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


def checked_graph(model: nn.Module, path: str | Path, *, fp16_on: torch.device | None = None) -> Path:
    """``model`` exported to ``path`` and checked against PyTorch: fp32 on the CPU, or with
    ``fp16_on`` the fp16 model traced on that (CUDA) device and checked against itself there."""
    if fp16_on is None:
        export_onnx(model, path)
        check_graph_matches(model, path)
        return Path(path)
    model = model.to(device=fp16_on, dtype=torch.float16)
    export_onnx(model, path, keep_dtype=True)
    check_graph_matches(model, path, device=fp16_on)
    return Path(path)


@torch.no_grad()
def graph_difference(model: nn.Module, path: str | Path, *, device: torch.device | None = None,
                     seq_len: int = 24, batch_size: int = 3) -> tuple[float, float]:
    """(largest |output difference|, largest |output|) between ``model`` (PyTorch) and the graph at
    ``path`` in ONNX Runtime, on padded random inputs."""
    from prunetune.trainables.families.compaction import head_outputs
    from prunetune.trainables.runtimes.onnx_runtime import OrtModel

    device = device or torch.device("cpu")
    model = model.eval() if device.type != "cpu" else model.float().cpu().eval()
    inputs = sample_inputs(model, batch_size=batch_size, seq_len=seq_len, seed=1)
    expected = head_outputs(model(**{name: value.to(device) for name, value in inputs.items()})).float().cpu()
    actual = head_outputs(OrtModel(path, threads=1, device=device)(**inputs)).float()
    return float((expected - actual).abs().max()), float(expected.abs().max())


def check_graph_matches(model: nn.Module, path: str | Path, *, device: torch.device | None = None) -> float:
    difference, scale = graph_difference(model, path, device=device)
    fp16 = device is not None and device.type != "cpu"
    tolerance = FP16_TOLERANCE * max(scale, 1.0) if fp16 else ONNX_TOLERANCE
    if difference > tolerance:
        raise ModelError(f"{path}: ONNX outputs differ from PyTorch by up to {difference:.2e} "
                         f"(tolerance {tolerance:.0e})")
    return difference
