"""Compaction: turn pruned zeros into a physically smaller model, which is where speed comes from.

A head is removed when its value slice (weights and bias) or its attention-output columns
are all zero; an FFN neuron when its input row (weights and bias) or its output column is
all zero; a whole layer when it has neither heads nor neurons left (what remains of it is
its two layer norms and output biases, see ``_modeling.EmptiedLayer``), or nothing at all
when the pruner removed it in training (it passed its input through then, see
``_modeling.SkippedLayer``). All removals are exact, and :func:`compact_and_verify` checks
it against the masked model's logits. The result is the family's compacted classifier
(:mod:`._modeling`), which saves as a Hugging Face model directory carrying its own
modeling code, so that ``transformers.pipeline(..., trust_remote_code=True)`` loads it
where prunetune is not installed.
"""

from __future__ import annotations

import contextlib
import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from prunetune.errors import TrialError
from prunetune.trainables.families import (
    FAMILIES,
    FamilySpec,
    family_for,
    family_of,
    is_compacted,
)
from prunetune.trainables.families._modeling import (
    LayerView,
    fuse_model,
    fused_state_dict,
    layer_views,
    pruned_classes,
    supplied_head_class,
)
from prunetune.trainables.families._spec import (
    DEFAULT_HEAD,
    HEAD_COLUMNS,
    HEAD_ROWS,
    HEADS,
    head_of,
)

#: transformers' Auto class of each task head.
AUTO_CLASSES = {head: f"AutoModel{head}" for head in HEADS}
#: The outputs each task head returns (what compaction and the ONNX export compare), in order.
OUTPUTS_OF_HEAD = {"ForSequenceClassification": ("logits",), "ForTokenClassification": ("logits",),
                   "ForQuestionAnswering": ("start_logits", "end_logits")}
HEAD_OUTPUTS = tuple(dict.fromkeys(name for names in OUTPUTS_OF_HEAD.values() for name in names))

#: Relative tolerance of the compaction check: float32 sums in another order differ by ~1e-6.
LOGIT_RTOL = 1e-4


@dataclass(frozen=True)
class CompactionReport:
    heads_before: int
    heads_after: int
    ffn_before: int
    ffn_after: int
    layer_heads: tuple[int, ...]
    layer_intermediate_sizes: tuple[int, ...]
    skipped_layers: tuple[int, ...] = ()

    @property
    def heads_pruned(self) -> int:
        return self.heads_before - self.heads_after

    @property
    def ffn_kept(self) -> float:
        return self.ffn_after / self.ffn_before


# --------------------------------------------------------------------------- what is alive


def live_heads(view: LayerView) -> list[int]:
    """Indices of the attention units (heads; in grouped-query attention, key/value heads with
    the query heads that share them) that contribute to the layer's output (may be empty).

    A head whose value slice (weights and bias) or output columns are all zero contributes
    exactly nothing. A head with a zero query or key slice still adds the mean of its
    values, so it is only removable once the pruner has masked its values too (which it
    does for every head whose Q, K or V slice it prunes fully).
    """
    value, output = view.linear("value"), view.linear(HEAD_COLUMNS)
    values = value.weight.detach().ne(0).any(dim=1)
    if value.bias is not None:
        values |= value.bias.detach().ne(0)
    outputs = output.weight.detach().ne(0).any(dim=0)
    units = view.num_units  # heads; in grouped-query attention, key/value heads (each with its query heads)
    alive = values.view(units, -1).any(dim=1) & outputs.view(units, -1).any(dim=1)
    return alive.nonzero().flatten().tolist()


def live_neurons(view: LayerView) -> list[int]:
    """Indices of the FFN neurons with a non-zero input row (or bias) and output column (may be empty)."""
    ffn_in, ffn_out = view.linear("ffn_in"), view.linear("ffn_out")
    incoming = ffn_in.weight.detach().ne(0).any(dim=1)
    if ffn_in.bias is not None:
        incoming |= ffn_in.bias.detach().ne(0)
    outgoing = ffn_out.weight.detach().ne(0).any(dim=0)
    return (incoming & outgoing).nonzero().flatten().tolist()


def kept_units(heads: list[int], neurons: list[int]) -> tuple[list[int], list[int]]:
    """The heads and neurons a compacted layer keeps: all live ones, and none at all when
    neither is left (the layer is emptied). A layer with only its heads (or only its FFN)
    dead keeps unit 0 with its weights: keeping a unit is always exact, and a zero-width
    attention could not be reshaped by head."""
    if not heads and not neurons:
        return [], []
    return heads or [0], neurons or [0]


# --------------------------------------------------------------------------- compaction


def compact(model: nn.Module) -> tuple[nn.Module, CompactionReport]:
    """A smaller copy of ``model`` (a classifier of a supported family whose pruned weights are zeros)."""
    spec = family_of(model)
    views = layer_views(model, spec)  # split: rows are sliced per role
    skipped = [index for index, view in enumerate(views) if view.skipped]
    alive_units = [[] if view.skipped else live_heads(view) for view in views]
    alive_neurons = [[] if view.skipped else live_neurons(view) for view in views]
    units, neurons = map(list, zip(*(kept_units(u, n) for u, n in zip(alive_units, alive_neurons))))
    groups = [view.group_size for view in views]  # query heads per unit
    heads = [[unit * group + i for unit in kept for i in range(group)] for kept, group in zip(units, groups)]
    head = head_of(type(model).__name__)
    config = compacted_config(model.config, spec, [len(h) for h in heads], [len(n) for n in neurons],
                              skipped_layers=skipped, head=head, head_indices=heads)
    _, model_class = compacted_classes(spec, head)
    compacted = model_class(config).to(next(model.parameters()).device)
    sliced = fused_state_dict(_sliced_state_dict(model, views, units, neurons), spec)
    compacted.load_state_dict(_held_by(compacted, spec, sliced))
    compacted.eval()
    report = CompactionReport(
        heads_before=sum(view.num_heads for view in views),
        heads_after=sum(len(u) * group for u, group in zip(alive_units, groups)),
        ffn_before=sum(view.ffn_width for view in views),
        ffn_after=sum(len(n) for n in alive_neurons),
        layer_heads=tuple(config.layer_heads),
        layer_intermediate_sizes=tuple(config.layer_intermediate_sizes),
        skipped_layers=tuple(skipped),
    )
    return compacted, report


def compacted_config(config, spec: FamilySpec, layer_heads: list[int], layer_widths: list[int], *,
                     skipped_layers: list[int] = (), head: str = DEFAULT_HEAD,
                     head_indices: list[list[int]] | None = None):
    """The compacted model's config: ``config`` with the per-layer widths and the compacted type
    (and, given ``head_indices``, which of the family's heads each layer kept)."""
    values = config.to_dict()
    for stale in ("model_type", "layer_heads", "layer_intermediate_sizes", "skipped_layers", "layer_head_indices",
                  "architectures", "auto_map", "transformers_version"):
        values.pop(stale, None)
    config_class, model_class = compacted_classes(spec, head)
    kept = [list(map(int, h)) for h in head_indices] if head_indices is not None else None
    return config_class(layer_heads=layer_heads, layer_intermediate_sizes=layer_widths,
                        skipped_layers=list(skipped_layers), layer_head_indices=kept,
                        architectures=[model_class.__name__], **values)


def _sliced_state_dict(model: nn.Module, views: list[LayerView], units: list[list[int]],
                       neurons: list[list[int]]) -> dict[str, torch.Tensor]:
    """The model's weights with only the kept attention units (heads, or key/value heads with
    their query heads) and FFN neurons of each layer."""
    state = {key: value.detach().clone() for key, value in model.state_dict().items()}
    names = {id(module): name for name, module in model.named_modules()}
    for view, kept_units, kept_neurons in zip(views, units, neurons):
        def rows(role: str) -> torch.Tensor:
            size = view.unit_rows(role)
            return torch.tensor([u * size + i for u in kept_units for i in range(size)], dtype=torch.long)

        cols = torch.tensor(kept_neurons, dtype=torch.long)
        for role in HEAD_ROWS:
            _select_rows(state, names[id(view.linear(role))], rows(role))
        for linear in view.extra_head_rows().values():  # per query head, as the query's rows
            _select_rows(state, names[id(linear)], rows("query"))
        _select(state, f"{names[id(view.linear(HEAD_COLUMNS))]}.weight", rows(HEAD_COLUMNS), dim=1)
        _select_rows(state, names[id(view.linear('ffn_in'))], cols)
        if view.ffn_gate() is not None:  # a gated FFN's neuron: its gate row goes with its input row
            _select_rows(state, names[id(view.ffn_gate())], cols)
        _select(state, f"{names[id(view.linear('ffn_out'))]}.weight", cols, dim=1)
    return state


def _held_by(compacted: nn.Module, spec: FamilySpec, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``state`` less what removed layers do not hold: the zero-size slices of an ``EmptiedLayer``'s
    maps, everything of a ``SkippedLayer``. Any other key the compacted model lacks is left in,
    for ``load_state_dict`` to refuse."""
    skipped = [f"{spec.layers}.{index}." for index in compacted.config.skipped_layers]
    keys = compacted.state_dict().keys()
    return {key: value for key, value in state.items()
            if key in keys or (value.numel() and not key.startswith(tuple(skipped)))}


def _select_rows(state: dict[str, torch.Tensor], prefix: str, index: torch.Tensor) -> None:
    _select(state, f"{prefix}.weight", index, dim=0)
    if f"{prefix}.bias" in state:
        _select(state, f"{prefix}.bias", index, dim=0)


def _select(state: dict[str, torch.Tensor], key: str, index: torch.Tensor, *, dim: int) -> None:
    tensor = state[key]
    state[key] = tensor.index_select(dim, index.to(tensor.device)).contiguous()


# --------------------------------------------------------------------------- verification


@torch.no_grad()
def logit_difference(reference: nn.Module, candidate: nn.Module, *, vocab_size: int, seq_len: int = 16,
                     batch_size: int = 4, seed: int = 0) -> tuple[float, float]:
    """(largest |difference| of the two models' logits, largest |logit| of ``reference``) on random inputs."""
    generator = torch.Generator().manual_seed(seed)
    device = next(reference.parameters()).device
    input_ids = torch.randint(0, vocab_size, (batch_size, seq_len), generator=generator).to(device)
    attention_mask = torch.ones_like(input_ids)
    attention_mask[0, seq_len // 2:] = 0  # exercise padding too
    reference.eval(), candidate.eval()
    expected = head_outputs(reference(input_ids=input_ids, attention_mask=attention_mask))
    actual = head_outputs(candidate(input_ids=input_ids, attention_mask=attention_mask))
    return float((expected - actual).abs().max()), float(expected.abs().max())


def head_outputs(outputs) -> torch.Tensor:
    """Every output of a task head (class logits, token logits, start and end logits), flattened per row."""
    return torch.cat([outputs[name].flatten(1) for name in HEAD_OUTPUTS if outputs.get(name) is not None], dim=1)


def max_logit_difference(reference: nn.Module, candidate: nn.Module, *, vocab_size: int, **kwargs) -> float:
    return logit_difference(reference, candidate, vocab_size=vocab_size, **kwargs)[0]


def compact_and_verify(model: nn.Module, *, rtol: float = LOGIT_RTOL) -> tuple[nn.Module, CompactionReport]:
    """Compact, then check that the compacted model computes what the masked model computed.

    The tolerance is relative to the logits' own magnitude: small random models have tiny
    logits, where an absolute tolerance would let a wrongly sliced head through.
    """
    compacted, report = compact(model)
    difference, scale = logit_difference(model, compacted, vocab_size=model.config.vocab_size)
    if difference > rtol * max(scale, 1e-6):
        raise TrialError(f"compaction changed the model's logits by up to {difference:.2e}, against logits of "
                         f"magnitude {scale:.2e} (relative tolerance {rtol:.0e})")
    return compacted, report


# --------------------------------------------------------------------------- classes, save and load


def compacted_classes(spec: FamilySpec, head: str = DEFAULT_HEAD) -> tuple[type, type]:
    """The family's compacted (config, model) classes with ``head``, registered with transformers' Auto classes."""
    classes = pruned_classes(spec, head=head)
    _register(spec, *classes, head=head)
    return classes


def _register(spec: FamilySpec, config_class: type, model_class: type, *, head: str) -> None:
    import transformers

    # A second registration in the same process raises ValueError: nothing to do then.
    with contextlib.suppress(ValueError):
        transformers.AutoConfig.register(spec.pruned_model_type, config_class)
    with contextlib.suppress(ValueError):
        getattr(transformers, AUTO_CLASSES[head]).register(config_class, model_class)


def register_auto_classes() -> None:
    """Let AutoConfig / AutoModelFor... / pipeline() load every family's compacted models, with every head,
    and its dense models with the heads the family supplies (EuroBERT's question answering)."""
    import transformers

    for spec in FAMILIES.values():
        for head in HEADS:
            compacted_classes(spec, head)
        for head in spec.supplied_heads:
            # transformers skips a native config's registration unless told ``exist_ok`` (it has no class to shadow).
            getattr(transformers, AUTO_CLASSES[head]).register(getattr(transformers, spec.config_class),
                                                              supplied_head_class(spec, head), exist_ok=True)


def auto_class_of(model_dir: str | Path):
    """The transformers Auto class that loads a saved model with the head its ``architectures`` names."""
    import transformers

    architectures = json.loads((Path(model_dir) / "config.json").read_text()).get("architectures") or []
    head = head_of(architectures[0]) if architectures else DEFAULT_HEAD
    return getattr(transformers, AUTO_CLASSES[head])


def model_of_config(config: dict) -> nn.Module:
    """A randomly initialised model of a saved config (``config.json`` as a dict), with its own head:
    what a latency table needs of a model that lives on another node."""
    import transformers

    register_auto_classes()
    values = dict(config)
    architectures = values.get("architectures") or []
    head = head_of(architectures[0]) if architectures else DEFAULT_HEAD
    shape = transformers.AutoConfig.for_model(values.pop("model_type"), **values)
    return getattr(transformers, AUTO_CLASSES[head]).from_config(shape).eval()


def load_model_dir(model_dir: str | Path, *, device: str | torch.device = "cpu") -> nn.Module:
    """Any saved model of a supported family (a dense teacher, a compacted student), with its own head."""
    register_auto_classes()
    model = auto_class_of(model_dir).from_pretrained(str(model_dir), trust_remote_code=False)
    return model.to(device).eval()


def modeling_file(spec: FamilySpec) -> str:
    """The name of the file that defines ``spec``'s compacted classes in a model directory."""
    return f"modeling_{spec.pruned_model_type}.py"


def ship_modeling_code(model_dir: str | Path, spec: FamilySpec) -> list[Path]:
    """Copy the compacted classes' code into ``model_dir`` and point ``auto_map`` at it.

    The directory then loads with ``trust_remote_code=True`` where prunetune is not
    installed: the copied modules import only torch, transformers and each other.
    """
    model_dir = Path(model_dir)
    package = Path(__file__).parent
    module = Path(_family_module_file(spec)).name
    shipped = [shutil.copyfile(package / name, model_dir / name) for name in ("_spec.py", "_modeling.py", module)]
    entry = model_dir / modeling_file(spec)
    entry.write_text(_entry_module(spec, module.removesuffix(".py")))
    config_path = model_dir / "config.json"
    config = json.loads(config_path.read_text())
    stem = entry.stem
    config["auto_map"] = {"AutoConfig": f"{stem}.{spec.pruned_config_name}",
                          **{AUTO_CLASSES[head]: f"{stem}.{spec.pruned_head_name(head)}" for head in HEADS}}
    if head_of((config.get("architectures") or [DEFAULT_HEAD])[0]) == QA_HEAD:
        shipped.append(ship_qa_pipeline(model_dir, config))
    config_path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    return [*map(Path, shipped), entry]


def serving_config(config: dict) -> dict:
    """``config.json`` for a directory served from a runtime's files, where no PyTorch model is built:
    the family's own model type and head class and no ``auto_map``, so that transformers' Auto
    classes (the tokenizer's among them) and optimum's runtime classes read it without remote code.
    The per-layer widths stay, for the record."""
    spec = family_for(config.get("model_type"))
    head = head_of((config.get("architectures") or [DEFAULT_HEAD])[0])
    plain = {key: value for key, value in config.items() if key != "auto_map"}
    return {**plain, "model_type": spec.model_type, "architectures": [spec.head_class(head)]}


#: The head whose pipeline transformers 5 no longer has: its exports ship their own (``_qa_pipeline.py``).
QA_HEAD = "ForQuestionAnswering"
QA_PIPELINE_TASK = "question-answering"


def ship_qa_pipeline(model_dir: Path, config: dict) -> Path:
    """Copy the extractive-QA pipeline into ``model_dir`` and name it in ``custom_pipelines``, so that
    ``pipeline("question-answering", model=DIR, trust_remote_code=True)`` serves the model."""
    target = Path(shutil.copyfile(Path(__file__).parent / "_qa_pipeline.py", model_dir / "_qa_pipeline.py"))
    config["custom_pipelines"] = {QA_PIPELINE_TASK: {
        "impl": "_qa_pipeline.ExtractiveQuestionAnsweringPipeline", "pt": [AUTO_CLASSES[QA_HEAD]], "type": "text"}}
    return target


def _family_module_file(spec: FamilySpec) -> str:
    import importlib

    return importlib.import_module(f"{__package__}.{spec.name}").__file__


def _entry_module(spec: FamilySpec, family_module: str) -> str:
    classes = "".join(f"{spec.pruned_head_name(head)} = pruned_model_class(SPEC, __name__, {head!r})\n"
                      for head in HEADS)
    return (
        f'"""Compacted {spec.class_prefix} models (prunetune): each layer keeps its own heads and FFN width."""\n\n'
        "from ._modeling import pruned_config_class, pruned_model_class\n"
        f"from .{family_module} import SPEC\n\n"
        f"{spec.pruned_config_name} = pruned_config_class(SPEC, __name__)\n"
        + classes
    )


def save_compacted(model: nn.Module, directory: str | Path, *, tokenizer=None) -> Path:
    """Save a compacted model as a Hugging Face model directory that carries its modeling code."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    fuse_model(model, family_of(model))  # the family's own keys, whatever viewed it per role
    model.save_pretrained(directory)
    if tokenizer is not None:
        tokenizer.save_pretrained(directory)
    if is_compacted(model.config):
        ship_modeling_code(directory, family_of(model))
    return directory


def load_compacted(directory: str | Path, *, device: str | torch.device = "cpu") -> nn.Module:
    """A saved compacted model, through prunetune's own classes (no remote code is run)."""
    return load_model_dir(directory, device=device)


def model_of_structure(config_file: str | Path) -> nn.Module:
    """An untrained compacted model with the structure saved in ``config_file`` (to load weights into)."""
    raw = json.loads(Path(config_file).read_text())
    head = head_of((raw.get("architectures") or [DEFAULT_HEAD])[0])
    config_class, model_class = compacted_classes(family_for(raw.get("model_type")), head)
    return model_class(config_class.from_json_file(str(config_file)))
