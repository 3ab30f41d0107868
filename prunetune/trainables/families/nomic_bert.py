"""NomicBERT (nomic-embed-text): post-norm, rotary positions, a SwiGLU FFN, no biases.
transformers has no question-answering class for it: prunetune supplies one, built as BERT's."""

from ._spec import LLAMA_STYLE_LAYER, FamilySpec

SPEC = FamilySpec(
    name="nomic_bert", model_type="nomic_bert", class_prefix="NomicBert",
    config_class="NomicBertConfig", model_class="NomicBertForSequenceClassification",
    layers="nomic_bert.layers",
    **LLAMA_STYLE_LAYER,
    attention_norm="post_attention_layernorm", ffn_norm="post_mlp_layernorm",
    biases=False,
    base_prefix="nomic_bert", base_model_class="NomicBertModel", supplied_heads=("ForQuestionAnswering",),
)
