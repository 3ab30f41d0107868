"""DistilBERT: its own names for the layer's maps (``q_lin``, ``ffn.lin1``) and dimensions (``dim``)."""

from ._spec import ConfigKeys, FamilySpec

SPEC = FamilySpec(
    name="distilbert", model_type="distilbert", class_prefix="DistilBert",
    config_class="DistilBertConfig", model_class="DistilBertForSequenceClassification",
    layers="distilbert.transformer.layer",
    attention="attention",
    query="attention.q_lin", key="attention.k_lin", value="attention.v_lin",
    attention_output="attention.out_lin",
    ffn_in="ffn.lin1", ffn_out="ffn.lin2",
    attention_norm="sa_layer_norm", ffn_norm="output_layer_norm",
    heads_attribute="n_heads", inner_size_attributes=("dim",),
    config_keys=ConfigKeys(hidden_size="dim", num_heads="n_heads", intermediate_size="hidden_dim",
                           num_layers="n_layers"),
)
