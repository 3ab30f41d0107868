"""EuroBERT: Llama-style layers (pre-norm RMSNorm, a SiLU-gated FFN, rotary positions, no biases)
and grouped-query attention.

With fewer key/value heads than query heads, the unit of attention pruning is a key/value head
with the query heads that share it: its key and value rows, its query rows and its columns of
the output projection go together, so a compacted layer keeps the family's group size
(``num_key_value_groups``). transformers has no question-answering class for it: prunetune
supplies one, built as BERT's.
"""

from ._spec import ConfigKeys, FamilySpec

SPEC = FamilySpec(
    name="eurobert", model_type="eurobert", class_prefix="EuroBert",
    config_class="EuroBertConfig", model_class="EuroBertForSequenceClassification",
    layers="model.layers",
    attention="self_attn",
    query="self_attn.q_proj", key="self_attn.k_proj", value="self_attn.v_proj",
    attention_output="self_attn.o_proj",
    ffn_in="mlp.up_proj", ffn_gate="mlp.gate_proj", ffn_out="mlp.down_proj",
    attention_norm="input_layernorm", ffn_norm="post_attention_layernorm",
    norm_placement="pre", norm_kind="rmsnorm", biases=False, position_scheme="rotary",
    heads_attribute=None, inner_size_attributes=(), head_size_attribute="head_dim",
    config_keys=ConfigKeys(num_kv_heads="num_key_value_heads"), kv_groups_attribute="num_key_value_groups",
    base_prefix="model", base_model_class="EuroBertModel", supplied_heads=("ForQuestionAnswering",),
)
