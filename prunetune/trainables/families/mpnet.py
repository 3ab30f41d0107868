"""MPNet (the base of all-mpnet-base-v2): BERT's post-norm layer, with a relative position bias
per head that the encoder computes once for every layer.

A compacted layer keeps fewer heads than that bias has rows: it takes the rows of the heads it
kept (``head_sliced_bias``, see ``_modeling.HeadSlicedBias``). Positions count from the padding
index + 1, as in RoBERTa.
"""

from ._spec import FamilySpec

SPEC = FamilySpec(
    name="mpnet", model_type="mpnet", class_prefix="MPNet",
    config_class="MPNetConfig", model_class="MPNetForSequenceClassification",
    layers="mpnet.encoder.layer",
    attention="attention.attn",
    query="attention.attn.q", key="attention.attn.k", value="attention.attn.v",
    attention_output="attention.attn.o",
    ffn_in="intermediate.dense", ffn_out="output.dense",
    attention_norm="attention.LayerNorm", ffn_norm="output.LayerNorm",
    layer_returns_tuple=True, position_offset=2, position_scheme="relative_bias", head_sliced_bias="position_bias",
)
