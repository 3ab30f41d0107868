"""A BERT classifier whose layers may each keep a different number of heads and FFN neurons.

This module is self-contained (it imports only torch and transformers) so that an
exported model directory can ship a copy of it as remote code: ``from_pretrained``
builds the full-size model from the config, shrinks each layer to the widths stored in
the config, and then loads the sliced weights.
"""

from __future__ import annotations

import contextlib

from torch import nn
from transformers import BertConfig, BertForSequenceClassification


class PrunedBertConfig(BertConfig):
    """BertConfig plus the per-layer head counts and FFN widths left by compaction."""

    model_type = "prunetune_bert"

    def __init__(self, layer_heads: list[int] | None = None, layer_intermediate_sizes: list[int] | None = None, **kwargs):
        super().__init__(**kwargs)
        layers = self.num_hidden_layers
        self.layer_heads = list(layer_heads) if layer_heads is not None else [self.num_attention_heads] * layers
        self.layer_intermediate_sizes = (
            list(layer_intermediate_sizes) if layer_intermediate_sizes is not None else [self.intermediate_size] * layers
        )
        if len(self.layer_heads) != layers or len(self.layer_intermediate_sizes) != layers:
            raise ValueError(
                f"layer_heads ({len(self.layer_heads)}) and layer_intermediate_sizes "
                f"({len(self.layer_intermediate_sizes)}) must each have num_hidden_layers={layers} entries"
            )


class PrunedBertForSequenceClassification(BertForSequenceClassification):
    config_class = PrunedBertConfig

    def __init__(self, config: PrunedBertConfig):
        super().__init__(config)
        shrink_layers(self.bert, config.layer_heads, config.layer_intermediate_sizes)


def shrink_layers(bert: nn.Module, layer_heads: list[int], layer_intermediate_sizes: list[int]) -> None:
    """Replace each layer's linear maps by smaller ones of the given widths (weights are set later)."""
    for layer, heads, width in zip(bert.encoder.layer, layer_heads, layer_intermediate_sizes):
        attention = layer.attention.self
        if heads != attention.num_attention_heads:
            inner = heads * attention.attention_head_size
            attention.query = _resized(attention.query, out_features=inner)
            attention.key = _resized(attention.key, out_features=inner)
            attention.value = _resized(attention.value, out_features=inner)
            layer.attention.output.dense = _resized(layer.attention.output.dense, in_features=inner)
            # BERT reshapes with view(..., -1, head_size), so only these two need updating.
            attention.num_attention_heads = heads
            attention.all_head_size = inner
        if width != layer.intermediate.dense.out_features:
            layer.intermediate.dense = _resized(layer.intermediate.dense, out_features=width)
            layer.output.dense = _resized(layer.output.dense, in_features=width)


def _resized(linear: nn.Linear, *, in_features: int | None = None, out_features: int | None = None) -> nn.Linear:
    return nn.Linear(
        in_features if in_features is not None else linear.in_features,
        out_features if out_features is not None else linear.out_features,
        bias=linear.bias is not None,
        device=linear.weight.device,
        dtype=linear.weight.dtype,
    )


def register_auto_classes() -> None:
    """Let AutoConfig / AutoModelForSequenceClassification / pipeline() load compacted models."""
    from transformers import AutoConfig, AutoModelForSequenceClassification

    # A second registration in the same process raises ValueError: nothing to do then.
    with contextlib.suppress(ValueError):
        AutoConfig.register(PrunedBertConfig.model_type, PrunedBertConfig)
        AutoModelForSequenceClassification.register(PrunedBertConfig, PrunedBertForSequenceClassification)
