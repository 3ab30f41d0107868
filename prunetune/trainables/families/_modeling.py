"""Compacted classifiers of any family: each layer keeps its own number of heads and FFN neurons.

A family's compacted model is its own model with the task's head (``BertForSequenceClassification``,
``BertForTokenClassification``, ``RobertaForQuestionAnswering``, ...) whose config also stores ``layer_heads`` and
``layer_intermediate_sizes``; building it makes the full-size model from the config, then
shrinks each layer's linear maps to those widths, so ``from_pretrained`` loads the sliced
weights as they are. State-dict keys stay the family's own. A layer left with no head and
no FFN neuron is an :class:`EmptiedLayer`: two layer norms, no attention, no FFN. A layer
the pruner removed in training (``skipped_layers``) is a :class:`SkippedLayer`: nothing.

This module, with ``_spec.py`` and the family's module, is copied into every compacted
model directory as remote code (``trust_remote_code=True``): it imports only torch,
transformers and its sibling modules, never prunetune.
"""

from __future__ import annotations

import functools
import inspect

import torch
import transformers
from torch import nn

from ._spec import DEFAULT_HEAD, HEAD_COLUMNS, HEAD_ROWS, ROLES, FamilySpec


def get_path(root: nn.Module, path: str):
    for part in path.split("."):
        root = getattr(root, part)
    return root


def has_path(root: nn.Module, path: str) -> bool:
    try:
        get_path(root, path)
    except AttributeError:
        return False
    return True


def set_path(root: nn.Module, path: str, value) -> None:
    owner, _, name = path.rpartition(".")
    setattr(get_path(root, owner) if owner else root, name, value)


def place(root: nn.Module, path: str, module: nn.Module) -> None:
    """``set_path``, creating empty container modules for the missing parts of ``path``."""
    *owners, name = path.split(".")
    for part in owners:
        if not hasattr(root, part):
            root.add_module(part, nn.Module())
        root = getattr(root, part)
    root.add_module(name, module)


class BiasOnly(nn.Module):
    """What is left of a linear map whose inputs are all pruned: its bias, under the map's own key."""

    def __init__(self, bias: torch.Tensor):
        super().__init__()
        self.bias = nn.Parameter(bias.detach().clone())  # initialised, like every other parameter


class EmptiedLayer(nn.Module):
    """An encoder layer whose heads and FFN neurons are all pruned.

    Such a layer adds nothing but its two output biases: post-norm, it computes
    ``ffn_norm(attention_norm(x + attention_bias) + ffn_bias)``, exactly what the masked layer
    computed, for the cost of two layer norms; pre-norm, ``x + attention_bias + ffn_bias``
    (the norms only fed the removed maps). The norms and biases keep their
    state-dict keys (``attention.output.LayerNorm.weight``, ``output.dense.bias``, ...), so a
    saved model loads as it was saved. :func:`emptied_layer` makes it an instance of the
    family's own layer class too, so transformers still records its hidden states.
    """

    def __init__(self, layer: nn.Module, spec: FamilySpec):
        nn.Module.__init__(self)
        keep_plain_attributes(self, layer)
        self.spec = spec
        for role in ("attention_output", "ffn_out"):
            bias = get_path(layer, spec.path(role)).bias
            if bias is not None:
                place(self, spec.path(role), BiasOnly(bias))
        for path in (spec.attention_norm, spec.ffn_norm):
            place(self, path, get_path(layer, path))

    def _bias(self, role: str) -> torch.Tensor | float:
        path = self.spec.path(role)
        return get_path(self, path).bias if has_path(self, path) else 0.0

    def forward(self, hidden_states: torch.Tensor, *args, **kwargs):
        if self.spec.norm_placement == "pre":
            hidden = hidden_states + self._bias("attention_output") + self._bias("ffn_out")
        else:
            hidden = get_path(self, self.spec.attention_norm)(hidden_states + self._bias("attention_output"))
            hidden = get_path(self, self.spec.ffn_norm)(hidden + self._bias("ffn_out"))
        return (hidden, None) if self.spec.layer_returns_tuple else hidden


@functools.cache
def _emptied_class(layer_class: type) -> type:
    return type(f"Emptied{layer_class.__name__}", (EmptiedLayer, layer_class), {"__module__": __name__})


def emptied_layer(layer: nn.Module, spec: FamilySpec) -> EmptiedLayer:
    """``layer`` with its heads and FFN gone (see :class:`EmptiedLayer`); shares its layer norms."""
    return _emptied_class(type(layer))(layer, spec)


class SkippedLayer(nn.Module):
    """An encoder layer removed whole: its input is its output.

    A pruner that removes a layer while it trains makes the layer pass its input through
    from then on (:meth:`LayerView.set_skipped`), so the rest of the model learns without
    it, layer norms included; the compacted layer is then exactly this, and costs nothing.
    :func:`skipped_layer` makes it an instance of the family's layer class too.
    """

    def __init__(self, spec: FamilySpec, layer: nn.Module | None = None):
        nn.Module.__init__(self)
        if layer is not None:
            keep_plain_attributes(self, layer)
        self.spec = spec

    def forward(self, hidden_states: torch.Tensor, *args, **kwargs):
        return _passed_through(hidden_states, returns_tuple=self.spec.layer_returns_tuple)


def _passed_through(hidden_states: torch.Tensor, *args, returns_tuple: bool = False, **kwargs):
    """A skipped layer's forward: its input, as the family's layers return their output."""
    return (hidden_states, None) if returns_tuple else hidden_states


@functools.cache
def _skipped_class(layer_class: type) -> type:
    return type(f"Skipped{layer_class.__name__}", (SkippedLayer, layer_class), {"__module__": __name__})


def skipped_layer(layer: nn.Module, spec: FamilySpec) -> SkippedLayer:
    return _skipped_class(type(layer))(spec, layer)


def keep_plain_attributes(target: nn.Module, layer: nn.Module) -> None:
    """Copy the layer's plain attributes (ModernBERT's ``attention_type``, a ``layer_idx``): the
    family's encoder reads them from each layer to choose its mask and positions."""
    for name, value in vars(layer).items():
        if not name.startswith("_") and name != "training" and not isinstance(value, (nn.Module, torch.Tensor)):
            setattr(target, name, value)


class FusedLinear(nn.Module):
    """One fused matrix (ModernBERT's ``Wqkv``) seen as one linear map per role it holds.

    Its children are named by role (``query``, ``key``, ``value``), so that masks, scores
    and slices address each role as they do a family with separate maps; the forward stacks
    their outputs as the fused matrix did, so the family's own attention code runs unchanged.
    """

    def __init__(self, parts: dict[str, nn.Linear]):
        super().__init__()
        for role, linear in parts.items():
            self.add_module(role, linear)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([part(x) for part in self.children()], dim=-1)


def _linear_like(reference: nn.Linear, weight: torch.Tensor, bias: torch.Tensor | None) -> nn.Linear:
    linear = nn.Linear(weight.shape[1], weight.shape[0], bias=bias is not None, device=weight.device,
                       dtype=weight.dtype)
    with torch.no_grad():
        linear.weight.copy_(weight)
        if bias is not None:
            linear.bias.copy_(bias)
    linear.train(reference.training)
    return linear


def _role_rows(fused: nn.Linear, roles: tuple[str, ...], role: str) -> nn.Linear:
    """A copy of ``role``'s rows of an unsplit fused matrix."""
    index = roles.index(role)
    weight = fused.weight.detach().chunk(len(roles), dim=0)[index]
    bias = fused.bias.detach().chunk(len(roles), dim=0)[index] if fused.bias is not None else None
    return _linear_like(fused, weight, bias)


def split_fused(layer: nn.Module, spec: FamilySpec) -> None:
    """View each fused matrix of ``layer`` as a :class:`FusedLinear` of equal row blocks (once)."""
    for path, roles in spec.fused:
        fused = get_path(layer, path)
        if isinstance(fused, FusedLinear):
            continue
        set_path(layer, path, FusedLinear({role: _role_rows(fused, roles, role) for role in roles}))


def fuse_split(layer: nn.Module, spec: FamilySpec) -> None:
    """The inverse of :func:`split_fused`: each :class:`FusedLinear` becomes one matrix again."""
    for path, roles in spec.fused:
        split = get_path(layer, path) if has_path(layer, path) else None
        if not isinstance(split, FusedLinear):
            continue
        parts = [getattr(split, role) for role in roles]
        weight = torch.cat([part.weight.detach() for part in parts], dim=0)
        bias = torch.cat([part.bias.detach() for part in parts], dim=0) if parts[0].bias is not None else None
        set_path(layer, path, _linear_like(parts[0], weight, bias))


def fused_state_dict(state: dict[str, torch.Tensor], spec: FamilySpec) -> dict[str, torch.Tensor]:
    """``state`` (keys of split views: ``attn.Wqkv.query.weight``) with each fused matrix's
    parts stacked back under the fused key (``attn.Wqkv.weight``)."""
    if not spec.fused:
        return state
    state = dict(state)
    prefixes = {key[: -len(f".{roles[0]}.weight")] for path, roles in spec.fused for key in state
                if key.endswith(f"{path}.{roles[0]}.weight")}
    for prefix in sorted(prefixes):
        roles = next(roles for path, roles in spec.fused if prefix.endswith(path))
        for kind in ("weight", "bias"):
            keys = [f"{prefix}.{role}.{kind}" for role in roles]
            if all(key in state for key in keys):
                state[f"{prefix}.{kind}"] = torch.cat([state.pop(key) for key in keys], dim=0)
    return state


#: The attribute of a layer that keeps only some heads of a shared per-head bias (see :class:`HeadSlicedBias`).
KEPT_HEADS = "prunetune_kept_heads"


class HeadSlicedBias(nn.Module):
    """A compacted layer of a family whose layers all receive one per-head attention bias
    (MPNet's relative position bias, ``(batch, heads, length, length)``, computed once from
    the full head count): it keeps the rows of its own heads before the layer uses them.
    :func:`head_sliced_layer` makes the family's layer an instance of this."""

    def forward(self, *args, **kwargs):
        bound = inspect.signature(super().forward).bind(*args, **kwargs)
        name = self.prunetune_bias_argument
        bias = bound.arguments.get(name)
        if bias is not None:
            kept = torch.tensor(getattr(self, KEPT_HEADS), dtype=torch.long, device=bias.device)
            bound.arguments[name] = bias.index_select(1, kept)
        return super().forward(*bound.args, **bound.kwargs)


@functools.cache
def _head_sliced_class(layer_class: type, argument: str) -> type:
    return type(f"HeadSliced{layer_class.__name__}", (HeadSlicedBias, layer_class),
                {"__module__": __name__, "prunetune_bias_argument": argument})


def head_sliced_layer(layer: nn.Module, spec: FamilySpec, kept_heads: list[int]) -> nn.Module:
    """``layer`` (in place) slicing ``spec.head_sliced_bias`` to ``kept_heads``.

    The heads are a plain list, not a buffer: ``from_pretrained`` leaves buffers that are not
    in the checkpoint uninitialised, and the config (``layer_head_indices``) is their record.
    """
    layer.__class__ = _head_sliced_class(type(layer), spec.head_sliced_bias)
    setattr(layer, KEPT_HEADS, [int(head) for head in kept_heads])
    return layer


#: A layer module's attribute: the layer passes its input through (see ``LayerView.set_skipped``).
SKIPPED = "prunetune_skipped"


class LayerView:
    """One encoder layer seen through its family's spec: the six prunable maps and the heads."""

    def __init__(self, layer: nn.Module, spec: FamilySpec, *, split: bool = True):
        self.layer, self.spec = layer, spec
        if split and spec.fused and not self.emptied:
            split_fused(layer, spec)

    @property
    def emptied(self) -> bool:
        """Whether compaction removed the layer's every head and FFN neuron (it has no maps left)."""
        return isinstance(self.layer, (EmptiedLayer, SkippedLayer))

    @property
    def skipped(self) -> bool:
        """Whether the layer passes its input through: removed in training, or compacted so."""
        return isinstance(self.layer, SkippedLayer) or getattr(self.layer, SKIPPED, False)

    def set_skipped(self, skipped: bool) -> None:
        """Make the layer pass its input through (or compute again), keeping its weights.

        The instance's own ``forward`` shadows the class's: a skipped layer costs nothing in
        training either, and transformers' hooks on the module still see what it returns.
        """
        if skipped:
            self.layer.forward = functools.partial(_passed_through, returns_tuple=self.spec.layer_returns_tuple)
        else:
            self.layer.__dict__.pop("forward", None)
        setattr(self.layer, SKIPPED, bool(skipped))

    def linear(self, role: str) -> nn.Module:
        """One of the six prunable maps, or ``ffn_gate`` (a gated FFN's gate projection).

        In a layer whose fused matrices are not split (a compacted model's), a fused role is a
        copy of its rows, to read: only a split layer's maps can be replaced or trained.
        """
        path = self.spec.role_path(role)
        fused_path = self.spec.fused_of(role)
        if fused_path is not None and not has_path(self.layer, path):
            return _role_rows(get_path(self.layer, fused_path), dict(self.spec.fused)[fused_path], role)
        return get_path(self.layer, path)

    def set_linear(self, role: str, module: nn.Module) -> None:
        set_path(self.layer, self.spec.role_path(role), module)

    def ffn_gate(self) -> nn.Module | None:
        """The gate projection of a gated FFN (rows per neuron, pruned with ``ffn_in``'s), if any."""
        return None if self.spec.ffn_gate is None or self.emptied else self.linear("ffn_gate")

    def linears(self) -> dict[str, nn.Module]:
        return {} if self.emptied else {role: self.linear(role) for role in ROLES}

    def extra_head_rows(self) -> dict[str, nn.Module]:
        """The optional per-head projections this layer has (DeBERTa's relative-position ones)."""
        return {path: get_path(self.layer, path) for path in self.spec.extra_head_rows if has_path(self.layer, path)}

    @property
    def attention(self) -> nn.Module:
        return get_path(self.layer, self.spec.attention)

    @property
    def head_size(self) -> int:
        return int(getattr(self.attention, self.spec.head_size_attribute))

    @property
    def num_heads(self) -> int:
        # Read from the weights, which compaction and pruning change, not from the config.
        return 0 if self.emptied else self.linear("query").out_features // self.head_size

    @property
    def ffn_width(self) -> int:
        return 0 if self.emptied else self.linear("ffn_in").out_features

    @property
    def group_size(self) -> int:
        """Query heads per key/value head: 1, or a grouped-query layer's group size."""
        attribute = self.spec.kv_groups_attribute
        return int(getattr(self.attention, attribute)) if attribute and not self.emptied else 1

    @property
    def num_units(self) -> int:
        """Attention units: heads, or in grouped-query attention key/value heads (with their query heads)."""
        return 0 if self.emptied else self.linear("value").out_features // self.head_size

    def unit_rows(self, role: str) -> int:
        """Rows of ``role`` per attention unit (columns, for the attention output): a head's, or
        in grouped-query attention the query heads' of one group and the key/value head's."""
        return self.head_size * (1 if role in ("key", "value") else self.group_size)

    def set_num_heads(self, heads: int) -> None:
        """Tell the attention module its new head count (it reshapes by head size, so this is all)."""
        if self.spec.heads_attribute is not None:  # some families infer it from the projection's width
            setattr(self.attention, self.spec.heads_attribute, heads)
        for attribute in self.spec.inner_size_attributes:
            setattr(self.attention, attribute, heads * self.head_size)


def layer_views(model: nn.Module, spec: FamilySpec, *, split: bool = True) -> list[LayerView]:
    """Views of the model's layers. By default fused matrices are split into one map per role
    (in place: the model computes the same), for masks, scores and weights written per role;
    ``split=False`` only reads (a fused role is then a copy). :func:`fuse_model` undoes it."""
    return [LayerView(layer, spec, split=split) for layer in get_path(model, spec.layers)]


def fuse_model(model: nn.Module, spec: FamilySpec) -> nn.Module:
    """Every split fused matrix of ``model`` fused again (before it is saved or exported: one
    matrix multiply, and the family's own state-dict keys)."""
    if spec.fused:
        for layer in get_path(model, spec.layers):
            fuse_split(layer, spec)
    return model


def shrink(model: nn.Module, spec: FamilySpec, layer_heads: list[int], layer_widths: list[int],
           skipped: list[int] = (), head_indices: list[list[int]] | None = None) -> None:
    """Give each layer ``layer_heads[i]`` heads and ``layer_widths[i]`` FFN neurons (weights are set later).

    The ``skipped`` layers become :class:`SkippedLayer`; another layer with neither heads nor
    FFN neurons becomes an :class:`EmptiedLayer`; a layer keeps at least one of each
    otherwise (a zero-width attention cannot be reshaped by head). Fused matrices end fused,
    at their new widths. ``head_indices`` are the heads each layer kept, of the family's
    full count (a layer of a family with a shared per-head bias slices it by them).
    """
    layers = get_path(model, spec.layers)
    views = [LayerView(layer, spec, split=True) for layer in layers]  # fused matrices are resized per role
    for index, (view, heads, width) in enumerate(zip(views, layer_heads, layer_widths)):
        _shrink_layer(layers, index, view, heads, width, skipped, spec)
        if spec.head_sliced_bias and not LayerView(layers[index], spec, split=False).emptied:
            kept = head_indices[index] if head_indices else list(range(heads))
            head_sliced_layer(layers[index], spec, kept)
        fuse_split(layers[index], spec)


def _shrink_layer(layers: nn.ModuleList, index: int, view: LayerView, heads: int, width: int,
                  skipped: list[int], spec: FamilySpec) -> None:
    """One layer of :func:`shrink`: replaced when removed, its maps resized otherwise."""
    if index in skipped:
        if heads or width:
            raise ValueError(f"layer {index} is skipped but keeps {heads} heads and {width} FFN neurons")
        layers[index] = skipped_layer(view.layer, spec)
        return
    if heads == 0 and width == 0:
        layers[index] = emptied_layer(view.layer, spec)
        return
    if heads < 1 or width < 1:
        raise ValueError(f"layer {index}: {heads} heads and {width} FFN neurons; a layer keeps at least one of "
                         "each, or neither")
    if heads != view.num_heads:
        if heads % view.group_size:
            raise ValueError(f"layer {index}: {heads} heads do not make whole groups of {view.group_size} query "
                             "heads per key/value head")
        inner = heads * view.head_size
        for role in HEAD_ROWS:
            rows = inner if role == "query" else heads // view.group_size * view.head_size
            view.set_linear(role, _resized(view.linear(role), out_features=rows))
        for path, linear in view.extra_head_rows().items():
            set_path(view.layer, path, _resized(linear, out_features=inner))
        view.set_linear(HEAD_COLUMNS, _resized(view.linear(HEAD_COLUMNS), in_features=inner))
        view.set_num_heads(heads)
    if width != view.ffn_width:
        view.set_linear("ffn_in", _resized(view.linear("ffn_in"), out_features=width))
        if view.ffn_gate() is not None:
            view.set_linear("ffn_gate", _resized(view.ffn_gate(), out_features=width))
        view.set_linear("ffn_out", _resized(view.linear("ffn_out"), in_features=width))


def _resized(linear: nn.Linear, *, in_features: int | None = None, out_features: int | None = None) -> nn.Linear:
    return nn.Linear(
        in_features if in_features is not None else linear.in_features,
        out_features if out_features is not None else linear.out_features,
        bias=linear.bias is not None,
        device=linear.weight.device,
        dtype=linear.weight.dtype,
    )


def pruned_classes(spec: FamilySpec, module: str = __name__, head: str = DEFAULT_HEAD) -> tuple[type, type]:
    """The (config, model) classes of ``spec``'s compacted models with ``head``, defined in ``module``."""
    return pruned_config_class(spec, module), pruned_model_class(spec, module, head)


@functools.cache
def pruned_config_class(spec: FamilySpec, module: str = __name__) -> type:
    """The config of ``spec``'s compacted models: the family's config plus per-layer widths (one per family,
    shared by every head)."""
    base_config = getattr(transformers, spec.config_class)
    keys = spec.config_keys

    def config_init(self, layer_heads: list[int] | None = None, layer_intermediate_sizes: list[int] | None = None,
                    skipped_layers: list[int] | None = None, layer_head_indices: list[list[int]] | None = None,
                    **kwargs) -> None:
        base_config.__init__(self, **kwargs)
        # Which of the family's heads each layer kept (None: the first ones); a family whose
        # layers share one per-head bias slices it by them.
        self.layer_head_indices = [list(kept) for kept in layer_head_indices] if layer_head_indices else None
        layers = getattr(self, keys.num_layers)
        self.layer_heads = list(layer_heads) if layer_heads is not None else [getattr(self, keys.num_heads)] * layers
        self.layer_intermediate_sizes = (list(layer_intermediate_sizes) if layer_intermediate_sizes is not None
                                         else [getattr(self, keys.intermediate_size)] * layers)
        self.skipped_layers = sorted(skipped_layers or [])
        if len(self.layer_heads) != layers or len(self.layer_intermediate_sizes) != layers:
            raise ValueError(f"layer_heads ({len(self.layer_heads)}) and layer_intermediate_sizes "
                             f"({len(self.layer_intermediate_sizes)}) must each have {keys.num_layers}={layers} entries")
        if any(not 0 <= index < layers for index in self.skipped_layers):
            raise ValueError(f"skipped_layers {self.skipped_layers}: layers are numbered 0 to {layers - 1}")

    return type(spec.pruned_config_name, (base_config,), {
        "__module__": module, "__init__": config_init, "model_type": spec.pruned_model_type,
        "__doc__": f"{spec.config_class} plus the per-layer head counts and FFN widths left by compaction.",
    })


@functools.cache
def pruned_model_class(spec: FamilySpec, module: str = __name__, head: str = DEFAULT_HEAD) -> type:
    """The compacted model of ``spec`` with ``head`` (its task): the family's own class, shrunk per layer."""
    base_model = head_base_class(spec, head)
    config_class = pruned_config_class(spec, module)

    def model_init(self, config) -> None:
        base_model.__init__(self, config)
        shrink(self, spec, config.layer_heads, config.layer_intermediate_sizes, getattr(config, "skipped_layers", []),
               getattr(config, "layer_head_indices", None))

    return type(spec.pruned_head_name(head), (base_model,), {
        "__module__": module, "__init__": model_init, "config_class": config_class,
        "__doc__": f"A compacted {spec.head_class(head)}: each layer has its own heads and FFN width.",
    })


# --------------------------------------------------------------------------- heads transformers lacks


def head_base_class(spec: FamilySpec, head: str) -> type:
    """The family's own class with ``head``: transformers' one, or the one the family supplies."""
    if head in spec.supplied_heads:
        return supplied_head_class(spec, head)
    return getattr(transformers, spec.head_class(head))


@functools.cache
def supplied_head_class(spec: FamilySpec, head: str) -> type:
    """A task head transformers has no class for in ``spec``'s family, built the way transformers
    builds it for BERT: the family's encoder, then ``qa_outputs`` (hidden -> start, end logits)."""
    if head != "ForQuestionAnswering":
        raise ValueError(f"{spec.name}: prunetune supplies only the ForQuestionAnswering head, not {head}")
    pretrained = getattr(transformers, f"{spec.class_prefix}PreTrainedModel")
    encoder_class = getattr(transformers, spec.base_model_class)
    takes_pooler = "add_pooling_layer" in inspect.signature(encoder_class.__init__).parameters

    def init(self, config) -> None:
        pretrained.__init__(self, config)
        self.num_labels = 2
        encoder = encoder_class(config, add_pooling_layer=False) if takes_pooler else encoder_class(config)
        setattr(self, spec.base_prefix, encoder)
        self.qa_outputs = nn.Linear(config.hidden_size, 2)
        self.post_init()

    def forward(self, input_ids=None, attention_mask=None, token_type_ids=None, position_ids=None,
                inputs_embeds=None, start_positions=None, end_positions=None, **kwargs):
        from transformers.modeling_outputs import QuestionAnsweringModelOutput

        optional = {name: value for name, value in (("token_type_ids", token_type_ids),
                                                     ("position_ids", position_ids)) if value is not None}
        outputs = getattr(self, spec.base_prefix)(input_ids=input_ids, attention_mask=attention_mask,
                                                  inputs_embeds=inputs_embeds, **optional, **kwargs)
        start_logits, end_logits = (part.squeeze(-1).contiguous() for part in self.qa_outputs(outputs[0]).split(1, -1))
        loss = None
        if start_positions is not None and end_positions is not None:
            # As BERT's head: positions outside the window are ignored.
            ignored = start_logits.size(1)
            loss_of = nn.CrossEntropyLoss(ignore_index=ignored)
            loss = (loss_of(start_logits, start_positions.clamp(0, ignored)) +
                    loss_of(end_logits, end_positions.clamp(0, ignored))) / 2
        return QuestionAnsweringModelOutput(loss=loss, start_logits=start_logits, end_logits=end_logits,
                                            hidden_states=getattr(outputs, "hidden_states", None),
                                            attentions=getattr(outputs, "attentions", None))

    return type(spec.head_class(head), (pretrained,), {
        "__module__": __name__, "__init__": init, "forward": forward, "base_model_prefix": spec.base_prefix,
        "__doc__": f"{spec.class_prefix} with a span-extraction head, as transformers builds BertForQuestionAnswering.",
    })
