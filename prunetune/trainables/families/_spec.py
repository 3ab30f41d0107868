"""How one encoder family lays out a layer, as plain names (no torch, no transformers).

A :class:`FamilySpec` is the whole description of a family: where the encoder layers sit
in its sequence classifier, the attribute paths of the six prunable linear maps of a
layer, the attributes that hold a layer's head count, and the names its ``config.json``
gives to the dimensions. Everything else (masks, compaction, the compacted model's
classes, save and load) is written once against this description.

This module is shipped, with ``_modeling.py`` and the family's own module, inside every
compacted model directory as remote code, so it imports nothing but the standard library.
"""

from __future__ import annotations

from dataclasses import dataclass, field

#: The six prunable linear maps of an encoder layer, in the order every view lists them.
ROLES = ("query", "key", "value", "attention_output", "ffn_in", "ffn_out")
#: The roles whose rows are per-head (sliced by head) and the one whose columns are.
HEAD_ROWS = ("query", "key", "value")
HEAD_COLUMNS = "attention_output"
#: transformers' task heads a compacted model can carry (the class name's suffix: ``Bert`` + head).
HEADS = ("ForSequenceClassification", "ForTokenClassification", "ForQuestionAnswering")
DEFAULT_HEAD = HEADS[0]


def head_of(class_name: str) -> str:
    """The task head a model class name ends with (``PrunedBertForTokenClassification`` -> ``ForTokenClassification``)."""
    for head in HEADS:
        if class_name.endswith(head):
            return head
    raise ValueError(f"{class_name!r} carries none of the task heads {', '.join(HEADS)}")


@dataclass(frozen=True)
class ConfigKeys:
    """The names a family's ``config.json`` gives to the dimensions prunetune reads."""

    hidden_size: str = "hidden_size"
    num_heads: str = "num_attention_heads"
    intermediate_size: str = "intermediate_size"
    num_layers: str = "num_hidden_layers"
    max_positions: str = "max_position_embeddings"


@dataclass(frozen=True)
class FamilySpec:
    """One encoder family (BERT, RoBERTa, DistilBERT, ...), described by attribute paths.

    Paths are dotted attribute names: ``layers`` from the sequence classifier to the
    ``ModuleList`` of encoder layers, the others from one layer. ``attention`` is the
    module that holds the head count (``heads_attribute``) and the attributes equal to
    heads x head size (``inner_size_attributes``), which compaction updates per layer.
    ``extra_head_rows`` names optional projections whose rows are per head as well (they
    are sliced with the query and key, and are absent from some configurations).
    ``position_offset`` is how many position ids the family reserves (RoBERTa counts
    positions from the padding index + 1), so that ``max_positions - position_offset``
    tokens fit.

    Every family here is post-norm: a layer computes ``h = attention_norm(x + attention(x))``
    and then ``ffn_norm(h + ffn(h))``. ``attention_norm`` and ``ffn_norm`` are the paths of
    those two layer norms; they are all that is left of a layer whose heads and FFN neurons
    are all pruned (see ``_modeling.EmptiedLayer``). ``layer_returns_tuple`` says whether a
    layer returns ``(hidden_states, attentions)`` rather than the hidden states alone.
    """

    name: str
    model_type: str
    class_prefix: str
    config_class: str
    model_class: str
    layers: str
    attention: str
    query: str
    key: str
    value: str
    attention_output: str
    ffn_in: str
    ffn_out: str
    attention_norm: str
    ffn_norm: str
    extra_head_rows: tuple[str, ...] = ()
    heads_attribute: str = "num_attention_heads"
    inner_size_attributes: tuple[str, ...] = ("all_head_size",)
    head_size_attribute: str = "attention_head_size"
    config_keys: ConfigKeys = field(default_factory=ConfigKeys)
    position_offset: int = 0
    layer_returns_tuple: bool = False

    @property
    def pruned_model_type(self) -> str:
        """The ``model_type`` of this family's compacted models (per-layer widths in their config)."""
        return f"prunetune_{self.name}"

    @property
    def pruned_config_name(self) -> str:
        return f"Pruned{self.class_prefix}Config"

    @property
    def pruned_model_name(self) -> str:
        return self.pruned_head_name(DEFAULT_HEAD)

    def pruned_head_name(self, head: str) -> str:
        """The compacted model class with ``head`` (``PrunedBertForQuestionAnswering``)."""
        return f"Pruned{self.class_prefix}{head}"

    def head_class(self, head: str) -> str:
        """The family's own transformers class with ``head`` (``BertForQuestionAnswering``)."""
        return f"{self.class_prefix}{head}"

    def path(self, role: str) -> str:
        """The attribute path of a prunable role inside one layer."""
        if role not in ROLES:
            raise KeyError(f"unknown role {role!r}; roles: {', '.join(ROLES)}")
        return getattr(self, role)


#: The layer layout BERT, RoBERTa, XLM-RoBERTa and ELECTRA share (paths from one layer).
BERT_LAYER = dict(
    attention="attention.self",
    query="attention.self.query",
    key="attention.self.key",
    value="attention.self.value",
    attention_output="attention.output.dense",
    ffn_in="intermediate.dense",
    ffn_out="output.dense",
    attention_norm="attention.output.LayerNorm",
    ffn_norm="output.LayerNorm",
)
