"""The test-time pruner (see ``test_time.py`` for the method).

Data. ``pseudo_label_samples`` texts are drawn (seeded) from the training split and read
without their labels; their pseudo-labels are the teacher's cached logits. ``ranking_samples``
of them are held out to rank candidates; the student distils on the rest (the task term of
the loss uses the teacher's argmax as label).

Candidates. Every attention head and every group of ``ffn_group_size`` FFN neurons of
every layer; removing one removes its slices of Q, K, V and the attention output, or its
rows of the FFN input and columns of the FFN output.

Proxies (the paper's are not public; these are ours):

- *Latency saved* is a linear cost model measured once per model shape, device and latency
  setting with ``measure_latency`` and cached beside the teacher: the dense model, the model
  with half the heads of every layer removed, and the model with half the FFN groups of
  every layer removed, timed in turns (median of ``COST_ROUNDS``). One head saves
  (dense - half heads) / heads removed, likewise one FFN group. Timing a single head's
  removal would drown in timer noise; half a model does not.
- *Estimated kept accuracy* is how much the soft agreement with the pseudo-labels on the
  held-out slice falls when the candidate is removed. Soft agreement is the mean
  probability the student gives to the teacher's label: agreement (accuracy against the
  pseudo-labels) made smooth, so that single candidates rarely tie at zero.
  ``trial.ranking_proxy``:

  - ``taylor`` (default): a gate g = 1 multiplies each candidate's output; the estimate is
    sum over mini-batches b of the slice of ``|dA_b / dg|``: a first-order estimate of the
    loss of agreement at g = 0, with absolute values per mini-batch (Michel et al. 2019) so
    that opposite effects on different samples do not cancel. One forward and backward
    pass over the slice ranks every candidate at once.
  - ``masked``: the exact fall ``A(all) - A(candidate removed)``, one forward pass over the
    slice per candidate: faithful, but its cost grows with the number of candidates.

- *Ranking*: candidates with the least kept accuracy per millisecond saved go first.
  Removal stops at the weight budget of the round (nearest to it, one head or group at a
  time), never taking a layer's last head or last FFN group.

Rounds. ``trial.prune_rounds`` rounds are spread over the pruning ramp (after the warm-up,
before the cool-down), each reaching the cubic schedule's sparsity at the start of the next
round. Every round re-ranks with the current student, removes its candidates and compacts
the student physically, so the fine-tuning steps that follow run on the smaller model: this
is where the method saves pruning + fine-tuning time.
"""

from __future__ import annotations

import copy
import json
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from filelock import FileLock
from torch import nn

from prunetune.trainables.families import family_of
from prunetune.trainables.families._modeling import LayerView, layer_views
from prunetune.trainables.families.compaction import compact_and_verify
from prunetune.trainables.measure.size import count_prunable_weights
from prunetune.trainables.methods._masks import MaskedLinear, cubic_sparsity
from prunetune.trainables.methods._pruner import Pruner, PruningContext
from prunetune.trainables.methods.test_time import PRUNE_SECONDS
from prunetune.trainables.training.batches import take
from prunetune.trainables.training.training_set import (
    DistillationSet,
    pseudo_labelled_set,
)

HEAD, FFN = "head", "ffn"
#: Examples per backward pass of the Taylor proxy (and per forward pass of both proxies).
RANKING_BATCH = 8
#: A measured saving at or below zero (timer noise) counts as this many milliseconds.
MIN_SAVING_MS = 1e-3
#: The latency cost models, beside the cached teacher (one per device and latency setting).
COSTS_FILE = "test_time_costs.json"
#: Turns in which the cost model's three variants are timed.
COST_ROUNDS = 3


# --------------------------------------------------------------------------- data


def pseudo_labelled_samples(context: PruningContext) -> tuple[DistillationSet, DistillationSet]:
    """(distillation samples, held-out ranking slice) of a trial, labelled by the teacher (seeded)."""
    options = context.settings.test_time
    return draw_samples(context.texts, context.teacher_logits, tokenizer=context.tokenizer,
                        max_length=context.max_length, samples=options.pseudo_label_samples,
                        ranking=options.ranking_samples, seed=context.settings.seed, pairs=context.pairs)


def draw_samples(texts: Sequence[str], teacher_logits: torch.Tensor, *, tokenizer, max_length: int,
                 samples: int, ranking: int, seed: int,
                 pairs: Sequence[str] | None = None) -> tuple[DistillationSet, DistillationSet]:
    """(distillation samples, held-out ranking slice), drawn from ``texts`` and labelled by the teacher.

    Takes the texts only: the ground-truth labels of the split are never read.
    """
    if len(teacher_logits) != len(texts):
        raise ValueError(f"{len(teacher_logits)} cached teacher logits for {len(texts)} texts; expected one per text")
    count = min(samples, len(texts))
    order = torch.randperm(len(texts), generator=torch.Generator().manual_seed(seed))[:count].tolist()
    held_out = min(ranking, count - 1)
    return tuple(
        pseudo_labelled_set(tokenizer, [texts[i] for i in rows], teacher_logits[rows], max_length=max_length,
                            pairs=[pairs[i] for i in rows] if pairs is not None else None)
        for rows in (order[held_out:], order[:held_out])
    )


# --------------------------------------------------------------------------- schedule


def round_targets(*, max_steps: int, final: float, warmup_fraction: float, cooldown_fraction: float,
                  rounds: int) -> dict[int, float]:
    """Step -> sparsity to reach there, one entry per round, spread over the cubic ramp."""
    start, end = warmup_fraction * max_steps, (1.0 - cooldown_fraction) * max_steps
    schedule = dict(max_steps=max_steps, final=final, warmup_fraction=warmup_fraction, cooldown_fraction=cooldown_fraction)
    targets: dict[int, float] = {}
    for k in range(rounds):
        step = int(start + k * (end - start) / rounds)  # floor: the last round stays before max_steps
        reach = cubic_sparsity(int(start + (k + 1) * (end - start) / rounds), **schedule) if k < rounds - 1 else final
        targets[step] = max(targets.get(step, 0.0), reach)
    return targets


# --------------------------------------------------------------------------- latency cost model


@dataclass(frozen=True)
class LatencyCosts:
    dense_ms: float
    head_ms: float  # saved by removing one attention unit (a head; a key/value head with its query heads)
    ffn_group_ms: float  # saved by removing one FFN group


def measure_costs(model: nn.Module, *, group_size: int, measure: Callable[[nn.Module], float],
                  rounds: int = COST_ROUNDS) -> LatencyCosts:
    """Time the model dense, with half its heads removed and with half its FFN groups removed.

    The three are timed in turns, ``rounds`` times, and the medians kept: load that drifts
    while they are timed (other trials on the machine) then shifts all three alike.
    """
    heads, groups = _unit_counts(model, group_size)
    variants, removed = {"dense": model}, {}
    if min(heads) > 1:  # a layer with one head can never lose it
        halved = {layer: list(range(count // 2)) for layer, count in enumerate(heads)}
        variants[HEAD], removed[HEAD] = remove_units(model, heads=halved, groups={}, group_size=group_size), sum(map(len, halved.values()))
    if min(groups) > 1:
        halved = {layer: list(range(count // 2)) for layer, count in enumerate(groups)}
        variants[FFN], removed[FFN] = remove_units(model, heads={}, groups=halved, group_size=group_size), sum(map(len, halved.values()))
    times: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(rounds):
        for name, variant in variants.items():
            times[name].append(measure(variant))
    median = {name: statistics.median(values) for name, values in times.items()}

    def saving(kind: str) -> float:
        if kind not in removed:
            return float("inf")
        return max((median["dense"] - median[kind]) / removed[kind], MIN_SAVING_MS)

    return LatencyCosts(dense_ms=median["dense"], head_ms=saving(HEAD), ffn_group_ms=saving(FFN))


def cached_costs(path: Path, key: str, compute: Callable[[], LatencyCosts]) -> LatencyCosts:
    """The costs stored under ``key`` in the JSON file ``path``, measured and stored when absent."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(path) + ".lock"):  # concurrent trials measure once
        stored = json.loads(path.read_text()) if path.is_file() else {}
        if key not in stored:
            stored[key] = vars(compute())
            path.write_text(json.dumps(stored, indent=2))
    return LatencyCosts(**stored[key])


# --------------------------------------------------------------------------- structure


def _views(model: nn.Module, *, split: bool = False) -> list[LayerView]:
    # The student trains between rounds: viewing it must not replace the parameters its optimiser
    # holds (splitting a fused matrix would). Only ``remove_units`` writes roles, into its own copy.
    return layer_views(model, family_of(model), split=split)


def _unit_counts(model: nn.Module, group_size: int) -> tuple[list[int], list[int]]:
    """Attention units (heads; key/value heads with their query heads) and FFN groups per layer of ``model``."""
    views = _views(model)
    return [view.num_units for view in views], [view.ffn_width // group_size for view in views]


@torch.no_grad()
def remove_units(model: nn.Module, *, heads: dict[int, list[int]], groups: dict[int, list[int]],
                 group_size: int) -> nn.Module:
    """A compacted copy of ``model`` without the given heads and FFN groups (per layer index)."""
    model = copy.deepcopy(model)
    for index, view in enumerate(_views(model, split=True)):
        for unit in heads.get(index, []):
            spans = {role: slice(unit * view.unit_rows(role), (unit + 1) * view.unit_rows(role))
                     for role in ("query", "key", "value", "attention_output")}
            _zero_attention_unit(view, spans)
        for group in groups.get(index, []):
            _zero_unit(view, ("ffn_in",), "ffn_out", slice(group * group_size, (group + 1) * group_size))
    compacted, _ = compact_and_verify(model)
    return compacted


def _zero_attention_unit(view: LayerView, spans: dict[str, slice]) -> None:
    """Zero one attention unit: its rows of Q, K and V (each role its own span) and its output columns."""
    for role in ("query", "key", "value"):
        _zero_unit(view, (role,), None, spans[role])
    view.linear("attention_output").weight[:, spans["attention_output"]] = 0


def _zero_unit(view: LayerView, row_roles: tuple[str, ...], column_role: str | None, span: slice) -> None:
    for role in row_roles:
        linear = view.linear(role)
        linear.weight[span] = 0
        if linear.bias is not None:
            linear.bias[span] = 0
    if column_role is not None:
        view.linear(column_role).weight[:, span] = 0


# --------------------------------------------------------------------------- kept-accuracy proxies


def soft_agreement(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Probability the student gives to the teacher's label, per example."""
    return logits.float().softmax(dim=-1).gather(1, labels[:, None].to(logits.device)).squeeze(1)


class _GatedLinear(MaskedLinear):
    """A linear map whose input columns are scaled by a gate per unit of ``width`` columns,
    read at every forward pass (so that setting a gate to 0 removes its unit at once)."""

    gate: torch.Tensor
    width: int

    def masked_weight(self) -> torch.Tensor:
        return self.weight * self.gate.repeat_interleave(self.width)[None, :].to(self.weight.dtype)


class _Gates:
    """Context manager: a multiplicative gate (1.0) on every head's and FFN group's output.

    A head's gate scales its columns of the attention output, an FFN group's its columns of
    the FFN output: gate 0 is exactly the candidate's removal. On exit the model is plain again.
    """

    def __init__(self, model: nn.Module, group_size: int, *, requires_grad: bool):
        self.model, self.group_size = model, group_size
        heads, groups = _unit_counts(model, group_size)
        device = next(model.parameters()).device
        self.heads = [torch.ones(n, device=device, requires_grad=requires_grad) for n in heads]
        self.groups = [torch.ones(n, device=device, requires_grad=requires_grad) for n in groups]

    def __enter__(self) -> "_Gates":
        self.was_training = self.model.training
        self.model.eval()  # no dropout while ranking
        self.originals = []
        for view, head_gate, group_gate in zip(_views(self.model), self.heads, self.groups):
            self._gate(view, "attention_output", head_gate, view.unit_rows("attention_output"))
            self._gate(view, "ffn_out", group_gate, self.group_size)
        return self

    def _gate(self, view: LayerView, role: str, gate: torch.Tensor, width: int) -> None:
        # The gated linear shares the original's parameters; putting the original back on
        # exit keeps the optimiser's references valid.
        original = view.linear(role)
        self.originals.append((view, role, original))
        gated = _GatedLinear.wrap(original)
        gated.gate, gated.width = gate, width
        view.set_linear(role, gated)

    def __exit__(self, *exc) -> None:
        for view, role, original in self.originals:
            view.set_linear(role, original)
        self.model.train(self.was_training)


def _batches(samples: DistillationSet, device: torch.device):
    for start in range(0, len(samples), RANKING_BATCH):
        rows = torch.arange(start, min(start + RANKING_BATCH, len(samples)))
        yield take(samples.inputs, rows, device), samples.labels[rows]


def taylor_kept_accuracy(model: nn.Module, ranking: DistillationSet, *, group_size: int,
                         device: torch.device) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Per layer, estimated agreement each head / FFN group keeps (first order, see module docstring)."""
    with _Gates(model, group_size, requires_grad=True) as gates:
        gate_list = gates.heads + gates.groups
        totals = [torch.zeros_like(g) for g in gate_list]
        for inputs, labels in _batches(ranking, device):
            agreement = soft_agreement(model(**inputs).logits, labels).sum() / len(ranking)
            for total, grad in zip(totals, torch.autograd.grad(agreement, gate_list)):
                total += grad.abs()
    layers = len(gates.heads)
    return [t.detach().cpu() for t in totals[:layers]], [t.detach().cpu() for t in totals[layers:]]


@torch.no_grad()
def masked_kept_accuracy(model: nn.Module, ranking: DistillationSet, *, group_size: int,
                         device: torch.device) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Per layer, the exact fall of agreement when each head / FFN group alone is removed."""

    def agreement() -> float:
        return sum(float(soft_agreement(model(**inputs).logits, labels).sum()) for inputs, labels in _batches(ranking, device)) / len(ranking)

    with _Gates(model, group_size, requires_grad=False) as gates:
        base = agreement()
        kept = []
        for gate_list in (gates.heads, gates.groups):
            per_layer = []
            for gate in gate_list:
                values = torch.zeros(len(gate))
                for unit in range(len(gate)):
                    gate[unit] = 0.0
                    values[unit] = base - agreement()
                    gate[unit] = 1.0
                per_layer.append(values)
            kept.append(per_layer)
    return kept[0], kept[1]


PROXIES: dict[str, Callable] = {"taylor": taylor_kept_accuracy, "masked": masked_kept_accuracy}


# --------------------------------------------------------------------------- ranking and removal


@dataclass(frozen=True)
class Candidate:
    layer: int
    kind: str  # HEAD or FFN
    index: int
    kept_accuracy: float
    saved_ms: float
    weights: int  # prunable weights it removes

    @property
    def kept_per_ms(self) -> float:
        return max(self.kept_accuracy, 0.0) / self.saved_ms


def candidates(model: nn.Module, kept: tuple[list[torch.Tensor], list[torch.Tensor]], costs: LatencyCosts,
               group_size: int) -> list[Candidate]:
    """Every head and FFN group of ``model``, with its proxies, best to prune first."""
    found = []
    for index, view in enumerate(_views(model)):
        hidden, head_size, group = view.linear("attention_output").out_features, view.head_size, view.group_size
        unit_weights = hidden * head_size * (2 * group + 2)  # its query heads' Q and output, one K and V
        for unit, value in enumerate(kept[0][index].tolist()):
            found.append(Candidate(index, HEAD, unit, value, costs.head_ms, unit_weights))
        for group, value in enumerate(kept[1][index].tolist()):
            found.append(Candidate(index, FFN, group, value, costs.ffn_group_ms, 2 * hidden * group_size))
    return sorted(found, key=lambda c: (c.kept_per_ms, -c.saved_ms))


def choose(ranked: list[Candidate], *, budget: int, units: tuple[list[int], list[int]]) -> list[Candidate]:
    """Take candidates in rank order while that brings the removed weights nearer to ``budget``;
    never a layer's last head or last FFN group."""
    left = {HEAD: list(units[0]), FFN: list(units[1])}
    chosen, removed = [], 0
    for candidate in ranked:
        if left[candidate.kind][candidate.layer] <= 1:
            continue
        if removed + candidate.weights - budget > budget - removed:  # would overshoot by more than it lacks
            continue
        chosen.append(candidate)
        removed += candidate.weights
        left[candidate.kind][candidate.layer] -= 1
    return chosen


# --------------------------------------------------------------------------- the trial's entry point


def build_pruner(context: PruningContext) -> "TestTimePruner":
    """The pruner of a test_time trial: cost model (cached per device and latency setting), rounds, ranking slice."""
    s, options = context.settings, context.settings.test_time
    _, ranking = pseudo_labelled_samples(context)
    key = (f"{context.device}|threads={s.latency.threads or torch.get_num_threads()}|batch={s.latency.batch_size}"
           f"|seq={s.latency.seq_len}|group={options.ffn_group_size}")
    costs = cached_costs(context.cache_dir / COSTS_FILE, key,
                         lambda: measure_costs(context.student, group_size=options.ffn_group_size,
                                               measure=context.measure_ms))
    targets = round_targets(max_steps=s.max_steps, final=s.sparsity, warmup_fraction=s.warmup_fraction,
                            cooldown_fraction=s.cooldown_fraction, rounds=options.prune_rounds)
    return TestTimePruner(ranking=ranking, costs=costs, dense_weights=count_prunable_weights(context.student),
                          group_size=options.ffn_group_size, proxy=options.ranking_proxy, targets=targets,
                          device=context.device)


# --------------------------------------------------------------------------- the pruner


class TestTimePruner(Pruner):
    """Rounds of rank, remove and compact, driven by the trial at the steps of ``targets``.

    Its state (sparsity reached, seconds spent pruning) is in buffers, so checkpoints keep it;
    the pruned structure itself lives in the student.
    """

    __test__ = False  # not a pytest test class, despite its name

    def __init__(self, *, ranking: DistillationSet, costs: LatencyCosts, dense_weights: int, group_size: int,
                 proxy: str, targets: dict[int, float], device: torch.device):
        super().__init__()
        self.ranking, self.costs, self.dense_weights = ranking, costs, dense_weights
        self.group_size, self.proxy, self.targets, self.device = group_size, PROXIES[proxy], targets, device
        self.register_buffer("sparsity_reached", torch.tensor(0.0, dtype=torch.float64))
        self.register_buffer("pruning_seconds", torch.tensor(0.0, dtype=torch.float64))

    @property
    def current_sparsity(self) -> float:
        return float(self.sparsity_reached)

    @property
    def seconds(self) -> float:
        """Wall time spent ranking, removing and compacting."""
        return float(self.pruning_seconds)

    def before_step(self, step: int, student: nn.Module) -> nn.Module:
        """At the steps of its rounds: the student compacted down to that round's sparsity."""
        target = self.targets.get(step)
        return student if target is None else self.prune(student, target)

    def metrics(self) -> dict[str, float]:
        # Ranking, removal and compaction, inside train_seconds (pruning + fine-tuning time).
        return {PRUNE_SECONDS: self.seconds}

    def prune(self, model: nn.Module, sparsity: float) -> nn.Module:
        """``model`` compacted down to ``sparsity`` (itself when it is there already)."""
        started = time.perf_counter()
        budget = round(sparsity * self.dense_weights) - (self.dense_weights - count_prunable_weights(model))
        if budget > 0:
            kept = self.proxy(model, self.ranking, group_size=self.group_size, device=self.device)
            ranked = candidates(model, kept, self.costs, self.group_size)
            chosen = choose(ranked, budget=budget, units=_unit_counts(model, self.group_size))
            heads: dict[int, list[int]] = {}
            groups: dict[int, list[int]] = {}
            for candidate in chosen:
                (heads if candidate.kind == HEAD else groups).setdefault(candidate.layer, []).append(candidate.index)
            if chosen:
                model = remove_units(model, heads=heads, groups=groups, group_size=self.group_size)
        self.sparsity_reached.fill_(1.0 - count_prunable_weights(model) / self.dense_weights)
        self.pruning_seconds += time.perf_counter() - started
        return model
