"""NomicBERT (nomic-embed-text): post-norm, rotary positions, a SwiGLU FFN, no biases.
transformers has no question-answering class for it: prunetune supplies one, built as BERT's."""

from ._spec import FamilySpec

SPEC = FamilySpec(
    name="nomic_bert", model_type="nomic_bert", class_prefix="NomicBert",
    config_class="NomicBertConfig", model_class="NomicBertForSequenceClassification",
    layers="nomic_bert.layers",
    attention="self_attn",
    query="self_attn.q_proj", key="self_attn.k_proj", value="self_attn.v_proj",
    attention_output="self_attn.o_proj",
    ffn_in="mlp.up_proj", ffn_gate="mlp.gate_proj", ffn_out="mlp.down_proj",
    attention_norm="post_attention_layernorm", ffn_norm="post_mlp_layernorm",
    biases=False, position_scheme="rotary",
    heads_attribute=None, inner_size_attributes=(), head_size_attribute="head_dim",
    base_prefix="nomic_bert", base_model_class="NomicBertModel", supplied_heads=("ForQuestionAnswering",),
)
