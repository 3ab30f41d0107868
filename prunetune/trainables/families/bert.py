"""BERT, and the models built on its architecture (MiniLM, the default teacher, is one)."""

from ._spec import BERT_LAYER, FamilySpec

SPEC = FamilySpec(
    name="bert", model_type="bert", class_prefix="Bert",
    config_class="BertConfig", model_class="BertForSequenceClassification",
    layers="bert.encoder.layer", **BERT_LAYER,
)
