"""GTE (Alibaba's new-impl encoders): post-norm, rotary positions, a gated FFN (``gate_proj``,
``up_proj``) whose output projection has a bias. transformers has no question-answering class
for it: prunetune supplies one, built as BERT's."""

from ._spec import FamilySpec

SPEC = FamilySpec(
    name="gte", model_type="gte", class_prefix="Gte",
    config_class="GteConfig", model_class="GteForSequenceClassification",
    layers="gte.layers",
    attention="self_attn",
    query="self_attn.q_proj", key="self_attn.k_proj", value="self_attn.v_proj",
    attention_output="self_attn.o_proj",
    ffn_in="mlp.up_proj", ffn_gate="mlp.gate_proj", ffn_out="mlp.down_proj",
    attention_norm="post_attention_layernorm", ffn_norm="post_mlp_layernorm",
    position_scheme="rotary",
    heads_attribute=None, inner_size_attributes=(), head_size_attribute="head_dim",
    base_prefix="gte", base_model_class="GteModel", supplied_heads=("ForQuestionAnswering",),
)
