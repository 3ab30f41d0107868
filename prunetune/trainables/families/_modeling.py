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

    Such a layer adds nothing but its two output biases: it computes
    ``ffn_norm(attention_norm(x + attention_bias) + ffn_bias)``, exactly what the masked layer
    computed, for the cost of two layer norms. The layer norms and biases keep their
    state-dict keys (``attention.output.LayerNorm.weight``, ``output.dense.bias``, ...), so a
    saved model loads as it was saved. :func:`emptied_layer` makes it an instance of the
    family's own layer class too, so transformers still records its hidden states.
    """

    def __init__(self, layer: nn.Module, spec: FamilySpec):
        nn.Module.__init__(self)
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

    def __init__(self, spec: FamilySpec):
        nn.Module.__init__(self)
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
    return _skipped_class(type(layer))(spec)


#: A layer module's attribute: the layer passes its input through (see ``LayerView.set_skipped``).
SKIPPED = "prunetune_skipped"


class LayerView:
    """One encoder layer seen through its family's spec: the six prunable maps and the heads."""

    def __init__(self, layer: nn.Module, spec: FamilySpec):
        self.layer, self.spec = layer, spec

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
        return get_path(self.layer, self.spec.path(role))

    def set_linear(self, role: str, module: nn.Module) -> None:
        set_path(self.layer, self.spec.path(role), module)

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

    def set_num_heads(self, heads: int) -> None:
        """Tell the attention module its new head count (it reshapes by head size, so this is all)."""
        setattr(self.attention, self.spec.heads_attribute, heads)
        for attribute in self.spec.inner_size_attributes:
            setattr(self.attention, attribute, heads * self.head_size)


def layer_views(model: nn.Module, spec: FamilySpec) -> list[LayerView]:
    return [LayerView(layer, spec) for layer in get_path(model, spec.layers)]


def shrink(model: nn.Module, spec: FamilySpec, layer_heads: list[int], layer_widths: list[int],
           skipped: list[int] = ()) -> None:
    """Give each layer ``layer_heads[i]`` heads and ``layer_widths[i]`` FFN neurons (weights are set later).

    The ``skipped`` layers become :class:`SkippedLayer`; another layer with neither heads nor
    FFN neurons becomes an :class:`EmptiedLayer`; a layer keeps at least one of each
    otherwise (a zero-width attention cannot be reshaped by head).
    """
    layers = get_path(model, spec.layers)
    for index, (view, heads, width) in enumerate(zip(layer_views(model, spec), layer_heads, layer_widths)):
        if index in skipped:
            if heads or width:
                raise ValueError(f"layer {index} is skipped but keeps {heads} heads and {width} FFN neurons")
            layers[index] = skipped_layer(view.layer, spec)
            continue
        if heads == 0 and width == 0:
            layers[index] = emptied_layer(view.layer, spec)
            continue
        if heads < 1 or width < 1:
            raise ValueError(f"layer {index}: {heads} heads and {width} FFN neurons; a layer keeps at least one of "
                             "each, or neither")
        if heads != view.num_heads:
            inner = heads * view.head_size
            for role in HEAD_ROWS:
                view.set_linear(role, _resized(view.linear(role), out_features=inner))
            for path, linear in view.extra_head_rows().items():
                set_path(view.layer, path, _resized(linear, out_features=inner))
            view.set_linear(HEAD_COLUMNS, _resized(view.linear(HEAD_COLUMNS), in_features=inner))
            view.set_num_heads(heads)
        if width != view.ffn_width:
            view.set_linear("ffn_in", _resized(view.linear("ffn_in"), out_features=width))
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
                    skipped_layers: list[int] | None = None, **kwargs) -> None:
        base_config.__init__(self, **kwargs)
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
    base_model = getattr(transformers, spec.head_class(head))
    config_class = pruned_config_class(spec, module)

    def model_init(self, config) -> None:
        base_model.__init__(self, config)
        shrink(self, spec, config.layer_heads, config.layer_intermediate_sizes, getattr(config, "skipped_layers", []))

    return type(spec.pruned_head_name(head), (base_model,), {
        "__module__": module, "__init__": model_init, "config_class": config_class,
        "__doc__": f"A compacted {spec.head_class(head)}: each layer has its own heads and FFN width.",
    })
