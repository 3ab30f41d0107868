"""ELECTRA discriminators: BERT's layer under ``electra.`` (embeddings may be narrower)."""

from ._spec import BERT_LAYER, FamilySpec

SPEC = FamilySpec(
    name="electra", model_type="electra", class_prefix="Electra",
    config_class="ElectraConfig", model_class="ElectraForSequenceClassification",
    layers="electra.encoder.layer", **BERT_LAYER,
)
