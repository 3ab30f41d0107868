"""Compaction: turn pruned zeros into a physically smaller model, which is where speed comes from.

A head is removed when its value slice (weights and bias) or its output columns are all
zero; an FFN neuron when its intermediate row (weights and bias) or its output column is
all zero. Both removals are exact, and ``compact_and_verify`` checks it.
The result is a :class:`PrunedBertForSequenceClassification` that saves and loads with
``save_pretrained`` / ``from_pretrained`` and its per-layer widths.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from prunetune.errors import TrialError
from prunetune.trainables.pruned_bert import (
    PrunedBertConfig,
    PrunedBertForSequenceClassification,
    register_auto_classes,
)
from prunetune.trainables.pruning import bert_layers

register_auto_classes()


@dataclass(frozen=True)
class CompactionReport:
    heads_before: int
    heads_after: int
    ffn_before: int
    ffn_after: int
    layer_heads: tuple[int, ...]
    layer_intermediate_sizes: tuple[int, ...]

    @property
    def heads_pruned(self) -> int:
        return self.heads_before - self.heads_after

    @property
    def ffn_kept(self) -> float:
        return self.ffn_after / self.ffn_before


def live_heads(layer: nn.Module) -> list[int]:
    """Indices of the heads that contribute to the layer's output (may be empty).

    A head whose value slice (weights and bias) or output columns are all zero contributes
    exactly nothing and is removed. A head with a zero query or key slice still adds the
    mean of its values, so it is only removable once the pruner has masked its values too
    (which it does for every head whose Q, K or V slice it prunes fully).
    """
    attention = layer.attention.self
    size = attention.attention_head_size
    count = attention.value.out_features // size
    values = attention.value.weight.detach().ne(0).any(dim=1)
    if attention.value.bias is not None:
        values |= attention.value.bias.detach().ne(0)
    outputs = layer.attention.output.dense.weight.detach().ne(0).any(dim=0)
    alive = values.view(count, size).any(dim=1) & outputs.view(count, size).any(dim=1)
    return alive.nonzero().flatten().tolist()


def live_neurons(layer: nn.Module) -> list[int]:
    """Indices of the FFN neurons with a non-zero input row (or bias) and output column (may be empty)."""
    incoming = layer.intermediate.dense.weight.detach().ne(0).any(dim=1) | layer.intermediate.dense.bias.detach().ne(0)
    outgoing = layer.output.dense.weight.detach().ne(0).any(dim=0)
    return (incoming & outgoing).nonzero().flatten().tolist()


def _at_least_one(indices: list[int]) -> list[int]:
    # A fully dead layer keeps unit 0 with its weights: keeping a unit is always exact, and
    # a zero-width matrix would break the attention reshape.
    return indices or [0]


def compact(model: nn.Module) -> tuple[PrunedBertForSequenceClassification, CompactionReport]:
    """A smaller copy of ``model`` (a BERT classifier whose pruned weights are zeros)."""
    layers = bert_layers(model)
    alive_heads = [live_heads(layer) for layer in layers]
    alive_neurons = [live_neurons(layer) for layer in layers]
    heads = [_at_least_one(h) for h in alive_heads]
    neurons = [_at_least_one(n) for n in alive_neurons]
    config = _compacted_config(model.config, heads, neurons)
    compacted = PrunedBertForSequenceClassification(config).to(next(model.parameters()).device)
    compacted.load_state_dict(_sliced_state_dict(model, heads, neurons))
    compacted.eval()
    report = CompactionReport(
        heads_before=sum(layer.attention.self.query.out_features // layer.attention.self.attention_head_size for layer in layers),
        heads_after=sum(len(h) for h in alive_heads),
        ffn_before=sum(layer.intermediate.dense.out_features for layer in layers),
        ffn_after=sum(len(n) for n in alive_neurons),
        layer_heads=tuple(config.layer_heads),
        layer_intermediate_sizes=tuple(config.layer_intermediate_sizes),
    )
    return compacted, report


def _compacted_config(config, heads: list[list[int]], neurons: list[list[int]]) -> PrunedBertConfig:
    values = config.to_dict()
    for stale in ("model_type", "layer_heads", "layer_intermediate_sizes", "architectures", "auto_map", "transformers_version"):
        values.pop(stale, None)
    return PrunedBertConfig(
        layer_heads=[len(h) for h in heads],
        layer_intermediate_sizes=[len(n) for n in neurons],
        architectures=[PrunedBertForSequenceClassification.__name__],
        **values,
    )


def _sliced_state_dict(model: nn.Module, heads: list[list[int]], neurons: list[list[int]]) -> dict[str, torch.Tensor]:
    state = {key: value.detach().clone() for key, value in model.state_dict().items()}
    prefix = _encoder_prefix(model)
    for index, (layer, kept_heads, kept_neurons) in enumerate(zip(bert_layers(model), heads, neurons)):
        size = layer.attention.self.attention_head_size
        rows = torch.tensor([h * size + i for h in kept_heads for i in range(size)], dtype=torch.long)
        cols = torch.tensor(kept_neurons, dtype=torch.long)
        base = f"{prefix}{index}."
        for name in ("query", "key", "value"):
            _select(state, f"{base}attention.self.{name}.weight", rows, dim=0)
            _select(state, f"{base}attention.self.{name}.bias", rows, dim=0)
        _select(state, f"{base}attention.output.dense.weight", rows, dim=1)
        _select(state, f"{base}intermediate.dense.weight", cols, dim=0)
        _select(state, f"{base}intermediate.dense.bias", cols, dim=0)
        _select(state, f"{base}output.dense.weight", cols, dim=1)
    return state


def _encoder_prefix(model: nn.Module) -> str:
    for name, module in model.named_modules():
        if module is bert_layers(model)[0]:
            return name[: -len("0")]
    raise TypeError(f"cannot locate the encoder layers of {type(model).__name__}")


def _select(state: dict[str, torch.Tensor], key: str, index: torch.Tensor, *, dim: int) -> None:
    tensor = state[key]
    state[key] = tensor.index_select(dim, index.to(tensor.device)).contiguous()


@torch.no_grad()
def max_logit_difference(reference: nn.Module, candidate: nn.Module, *, vocab_size: int, seq_len: int = 16,
                         batch_size: int = 4, seed: int = 0) -> float:
    """Largest absolute difference of the two models' logits on random inputs."""
    generator = torch.Generator().manual_seed(seed)
    device = next(reference.parameters()).device
    input_ids = torch.randint(0, vocab_size, (batch_size, seq_len), generator=generator).to(device)
    attention_mask = torch.ones_like(input_ids)
    attention_mask[0, seq_len // 2:] = 0  # exercise padding too
    reference.eval(), candidate.eval()
    expected = reference(input_ids=input_ids, attention_mask=attention_mask).logits
    actual = candidate(input_ids=input_ids, attention_mask=attention_mask).logits
    return float((expected - actual).abs().max().item())


def compact_and_verify(model: nn.Module, *, tolerance: float = 1e-4) -> tuple[PrunedBertForSequenceClassification, CompactionReport]:
    """Compact, then check that the compacted model computes what the masked model computed."""
    compacted, report = compact(model)
    difference = max_logit_difference(model, compacted, vocab_size=model.config.vocab_size)
    if difference > tolerance:
        raise TrialError(f"compaction changed the model's logits by up to {difference:.2e} (tolerance {tolerance:.0e})")
    return compacted, report


def save_compacted(model: PrunedBertForSequenceClassification, directory: str | Path, *, tokenizer=None) -> Path:
    """Save as a Hugging Face model directory (safetensors, config with per-layer widths, tokenizer)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(directory)
    if tokenizer is not None:
        tokenizer.save_pretrained(directory)
    return directory


def load_compacted(directory: str | Path, *, device: str | torch.device = "cpu") -> PrunedBertForSequenceClassification:
    model = PrunedBertForSequenceClassification.from_pretrained(str(directory))
    return model.to(device).eval()
