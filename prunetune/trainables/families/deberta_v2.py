"""DeBERTa-v2 and -v3: disentangled attention.

The relative-position projections are per head too: with ``share_att_key`` (v3) they are
the query and key projections themselves; otherwise ``pos_key_proj`` / ``pos_query_proj``
exist (for c2p / p2c) and are sliced with the heads they serve.
"""

from ._spec import FamilySpec

SPEC = FamilySpec(
    name="deberta_v2", model_type="deberta-v2", class_prefix="DebertaV2",
    config_class="DebertaV2Config", model_class="DebertaV2ForSequenceClassification",
    layers="deberta.encoder.layer",
    attention="attention.self",
    query="attention.self.query_proj", key="attention.self.key_proj", value="attention.self.value_proj",
    attention_output="attention.output.dense",
    ffn_in="intermediate.dense", ffn_out="output.dense",
    attention_norm="attention.output.LayerNorm", ffn_norm="output.LayerNorm",
    layer_returns_tuple=True, position_scheme="relative",
    extra_head_rows=("attention.self.pos_key_proj", "attention.self.pos_query_proj"),
)
