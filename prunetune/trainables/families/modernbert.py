"""ModernBERT: pre-norm, one fused ``Wqkv``, a GeGLU FFN (``Wi`` holds the gate, then the input),
no biases, rotary positions, sliding-window layers alternating with full-attention ones.

Its attention reshapes ``Wqkv``'s output by head size (``view(..., 3, -1, head_dim)``), so a
compacted layer needs nothing but narrower matrices. The first layer's attention norm is an
identity. transformers 5 runs ModernBERT with a padded batch and a mask on every device (the
sliding window is a mask too): the CPU export is that same graph, ``sdpa`` attention.
"""

from ._spec import FamilySpec

SPEC = FamilySpec(
    name="modernbert", model_type="modernbert", class_prefix="ModernBert",
    config_class="ModernBertConfig", model_class="ModernBertForSequenceClassification",
    layers="model.layers",
    attention="attn",
    query="attn.Wqkv.query", key="attn.Wqkv.key", value="attn.Wqkv.value",
    attention_output="attn.Wo",
    ffn_in="mlp.Wi.ffn_in", ffn_gate="mlp.Wi.ffn_gate", ffn_out="mlp.Wo",
    fused=(("attn.Wqkv", ("query", "key", "value")), ("mlp.Wi", ("ffn_gate", "ffn_in"))),
    attention_norm="attn_norm", ffn_norm="mlp_norm",
    norm_placement="pre", biases=False, position_scheme="rotary", attention_kinds="layer_types",
    heads_attribute=None, inner_size_attributes=(), head_size_attribute="head_dim",
)
