"""XLM-RoBERTa, the multilingual RoBERTa most low-resource-language classifiers start from."""

from ._spec import BERT_LAYER, FamilySpec

SPEC = FamilySpec(
    name="xlm_roberta", model_type="xlm-roberta", class_prefix="XLMRoberta",
    config_class="XLMRobertaConfig", model_class="XLMRobertaForSequenceClassification",
    layers="roberta.encoder.layer", position_offset=2, **BERT_LAYER,
)
