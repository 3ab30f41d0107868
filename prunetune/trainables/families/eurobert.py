"""EuroBERT: Llama-style layers (pre-norm RMSNorm, a SiLU-gated FFN, rotary positions, no biases)
and grouped-query attention.

With fewer key/value heads than query heads, the unit of attention pruning is a key/value head
with the query heads that share it: its key and value rows, its query rows and its columns of
the output projection go together, so a compacted layer keeps the family's group size
(``num_key_value_groups``). transformers has no question-answering class for it: prunetune
supplies one, built as BERT's.
"""

from ._spec import LLAMA_STYLE_LAYER, ConfigKeys, FamilySpec

SPEC = FamilySpec(
    name="eurobert", model_type="eurobert", class_prefix="EuroBert",
    config_class="EuroBertConfig", model_class="EuroBertForSequenceClassification",
    layers="model.layers",
    **LLAMA_STYLE_LAYER,
    attention_norm="input_layernorm", ffn_norm="post_attention_layernorm",
    norm_placement="pre", norm_kind="rmsnorm", biases=False,
    config_keys=ConfigKeys(num_kv_heads="num_key_value_heads"), kv_groups_attribute="num_key_value_groups",
    base_prefix="model", base_model_class="EuroBertModel", supplied_heads=("ForQuestionAnswering",),
)
