"""How one encoder family lays out a layer, as plain names (no torch, no transformers).

A :class:`FamilySpec` is the whole description of a family: where the encoder layers sit
in its sequence classifier, the attribute paths of the six prunable linear maps of a
layer (and of a gated FFN's gate), which of them one fused matrix holds, where the layer
norms sit, the attributes that hold a layer's head count, and the names its
``config.json`` gives to the dimensions. Everything else (masks, compaction, the
compacted model's classes, save and load) is written once against this description.

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
#: Where a layer's norms sit: after each residual sum (BERT) or before each sublayer (ModernBERT, EuroBERT).
NORM_PLACEMENTS = ("post", "pre")
NORM_KINDS = ("layernorm", "rmsnorm")
#: How tokens learn their positions: absolute embeddings, DeBERTa's disentangled relative
#: attention, a per-head relative bias shared by the layers (MPNet), or rotary (RoPE).
POSITION_SCHEMES = ("absolute", "relative", "relative_bias", "rotary")
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
    num_kv_heads: str | None = None  # grouped-query attention's key/value head count, where the family has one


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

    ``norm_placement`` is ``post`` (a layer computes ``h = attention_norm(x + attention(x))``
    and then ``ffn_norm(h + ffn(h))``) or ``pre`` (``h = x + attention(attention_norm(x))``,
    then ``h + ffn(ffn_norm(h))``). ``attention_norm`` and ``ffn_norm`` are the paths of
    those two norms (``norm_kind`` says LayerNorm or RMSNorm); with the output biases they are
    all that is left of a layer whose heads and FFN neurons are all pruned (see
    ``_modeling.EmptiedLayer``). ``layer_returns_tuple`` says whether a layer returns
    ``(hidden_states, attentions)`` rather than the hidden states alone.

    A gated FFN (``act(gate(x)) * ffn_in(x)``, GeGLU or SwiGLU) names its gate projection in
    ``ffn_gate``: its rows are per FFN neuron, pruned as one unit with the neuron's ``ffn_in``
    row and ``ffn_out`` column. ``fused`` lists the matrices that hold several roles stacked
    by rows, in order (ModernBERT's ``attn.Wqkv`` holds query, key and value; its ``mlp.Wi``
    the gate, then the input): while a model trains, each is viewed as one linear map per
    role, under ``<fused path>.<role>`` (the role paths above), and a compacted model holds it
    fused again, sliced per head and per neuron. ``attention_kinds`` names the config key
    that lists each layer's attention kind (ModernBERT's alternating sliding-window and full
    layers); ``position_scheme`` is one of :data:`POSITION_SCHEMES`. ``head_sliced_bias``
    names the layer's argument that carries a per-head attention bias computed once for
    every layer (MPNet's relative position bias): a compacted layer keeps the rows of its
    own heads (see ``_modeling.HeadSlicedBias``). ``kv_groups_attribute`` names the
    attention's count of query heads per key/value head, in a family with grouped-query
    attention: its unit of pruning is then a key/value head with the query heads that
    share it (``LayerView.unit_rows``).
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
    norm_placement: str = "post"
    norm_kind: str = "layernorm"
    ffn_gate: str | None = None
    fused: tuple[tuple[str, tuple[str, ...]], ...] = ()
    biases: bool = True
    position_scheme: str = "absolute"
    attention_kinds: str | None = None
    head_sliced_bias: str | None = None
    kv_groups_attribute: str | None = None  # the attention's query heads per key/value head (grouped-query)
    base_prefix: str | None = None  # the base model's attribute in a task model (``model``, ``gte``)
    base_model_class: str | None = None  # the family's encoder class (``EuroBertModel``), for a supplied head
    supplied_heads: tuple[str, ...] = ()  # task heads transformers lacks for the family, built like BERT's

    def __post_init__(self) -> None:
        for field_name, value, allowed in (("norm_placement", self.norm_placement, NORM_PLACEMENTS),
                                           ("norm_kind", self.norm_kind, NORM_KINDS),
                                           ("position_scheme", self.position_scheme, POSITION_SCHEMES)):
            if value not in allowed:
                raise ValueError(f"{self.name}: {field_name} = {value!r}; expected one of {', '.join(allowed)}")
        fused_roles = {role for _, roles in self.fused for role in roles}
        for path, roles in self.fused:
            for role in roles:
                if self.role_path(role) != f"{path}.{role}":
                    raise ValueError(f"{self.name}: role {role!r} of fused {path!r} must sit at {path}.{role}, "
                                     f"not {self.role_path(role)}")
        if "ffn_gate" in fused_roles and self.ffn_gate is None:
            raise ValueError(f"{self.name}: fused {self.fused} holds a gate, but ffn_gate is not set")

    @property
    def gated_ffn(self) -> bool:
        return self.ffn_gate is not None

    def role_path(self, role: str) -> str:
        """The path of ``role`` in one layer: the six prunable maps, and ``ffn_gate`` where there is one."""
        return self.ffn_gate if role == "ffn_gate" else self.path(role)

    def fused_of(self, role: str) -> str | None:
        """The fused matrix that holds ``role``, if any."""
        return next((path for path, roles in self.fused if role in roles), None)

    def shape(self) -> dict[str, str]:
        """The layer's shape in words (for the README's family table and error messages)."""
        return {
            "norm": f"{self.norm_placement}-norm {self.norm_kind}",
            "qkv": "fused" if self.fused_of("query") else "separate",
            "ffn": "gated" if self.gated_ffn else "plain",
            "biases": "yes" if self.biases else "no",
            "positions": self.position_scheme,
            "attention": "per-layer kinds" if self.attention_kinds else "full",
            "kv": "grouped" if self.kv_groups_attribute else "per head",
        }

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


#: The attention and gated FFN of the Llama-style layers EuroBERT, GTE and NomicBERT share (paths
#: from one layer): ``q_proj`` .. ``o_proj``, ``gate_proj``, ``up_proj``, ``down_proj``, and a head
#: count the attention infers from its projections' width.
LLAMA_STYLE_LAYER = dict(
    attention="self_attn",
    query="self_attn.q_proj",
    key="self_attn.k_proj",
    value="self_attn.v_proj",
    attention_output="self_attn.o_proj",
    ffn_in="mlp.up_proj",
    ffn_gate="mlp.gate_proj",
    ffn_out="mlp.down_proj",
    position_scheme="rotary",
    heads_attribute=None,
    inner_size_attributes=(),
    head_size_attribute="head_dim",
)

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
