"""RoBERTa: BERT's layer under ``roberta.``; position ids start after the padding index."""

from ._spec import BERT_LAYER, FamilySpec

SPEC = FamilySpec(
    name="roberta", model_type="roberta", class_prefix="Roberta",
    config_class="RobertaConfig", model_class="RobertaForSequenceClassification",
    layers="roberta.encoder.layer", position_offset=2, **BERT_LAYER,
)
