"""GTE (Alibaba's new-impl encoders): post-norm, rotary positions, a gated FFN (``gate_proj``,
``up_proj``) whose output projection has a bias. transformers has no question-answering class
for it: prunetune supplies one, built as BERT's."""

from ._spec import LLAMA_STYLE_LAYER, FamilySpec

SPEC = FamilySpec(
    name="gte", model_type="gte", class_prefix="Gte",
    config_class="GteConfig", model_class="GteForSequenceClassification",
    layers="gte.layers",
    **LLAMA_STYLE_LAYER,
    attention_norm="post_attention_layernorm", ffn_norm="post_mlp_layernorm",
    base_prefix="gte", base_model_class="GteModel", supplied_heads=("ForQuestionAnswering",),
)
