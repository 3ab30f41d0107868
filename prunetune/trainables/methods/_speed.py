"""Pruning to a speed: which heads and FFN groups go, by least estimated loss per millisecond saved.

With ``trial.target_speedup``, a pruner no longer removes a fraction of the weights: it
removes whole structure (attention heads, groups of FFN neurons, whole layers; a layer
that stays keeps at least one of each) until the per-layer latency table
(:mod:`prunetune.trainables.measure.latency_table`) predicts the target latency. Each
removal is chosen greedily: of every layer's next head, next FFN group and the rest of the
layer, the one with the least importance per millisecond it saves goes first, and the
saving is read off the table at the layer's current shape, so a layer whose FFN is already
narrow stops being cheap to shrink further. Importances are additive estimates of the loss
a unit carries (summed movement scores, or squared weight norms for magnitude), shifted so
that the least important unit of the model is 0.

The target latency follows the cubic schedule from the dense model's to the target's, so
structure goes gradually, as the sparsity does without a target.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from prunetune.trainables.measure.latency_table import (
    LatencyTable,
    cached_table,
    check_reachable,
)

#: FFN neurons are removed in this many groups per layer (GEMM-friendly widths, a short greedy loop).
FFN_GROUPS_PER_LAYER = 48
#: A removal the table says saves less than this is taken only when nothing else is left.
MIN_SAVING_MS = 1e-6


def ffn_group_size(width: int) -> int:
    return max(1, math.ceil(width / FFN_GROUPS_PER_LAYER))


@dataclass(frozen=True)
class Structure:
    """Per layer, which attention units (groups of ``heads_per_unit`` heads) and FFN groups stay."""

    units: list[torch.Tensor]  # bool per attention unit
    groups: list[torch.Tensor]  # bool per FFN group
    predicted_ms: float

    @property
    def removed_layers(self) -> frozenset[int]:
        """The layers with no attention unit left (their FFN groups are gone with them)."""
        return frozenset(i for i, units in enumerate(self.units) if not units.any())


def target_ms(table: LatencyTable, target_speedup: float, progress: float) -> float:
    """The latency to reach at ``progress`` (0: dense, 1: the target) of the schedule."""
    dense = table.dense_ms
    return dense * (1.0 - progress) + dense / target_speedup * progress


def choose_structure(unit_importance: list[torch.Tensor], group_importance: list[torch.Tensor], *,
                     table: LatencyTable, target: float, heads_per_unit: int, group_size: int,
                     widths: list[int]) -> Structure:
    """Remove units greedily (least importance per ms saved first) until ``table`` predicts ``target`` ms.

    The candidates in each layer are its least important attention unit, its least important
    FFN group (while it has more than one of each), and the whole rest of the layer (while
    another layer is left), which saves the layer's fixed costs too: a thin layer's
    attention over every token, its per-operator overhead.

    A saving counts only up to what is still needed to reach ``target``: near the target, a
    whole layer that would overshoot it by milliseconds is no longer cheaper per millisecond
    than the few units that close the gap. Where the last removal still overshoots (a whole
    layer, now that a removed layer costs nothing), the layers left take back their most
    important units per millisecond, as long as the prediction stays within ``target``.
    """
    lowest = min(float(t.min()) for t in [*unit_importance, *group_importance] if t.numel())
    orders = [torch.argsort(t).tolist() for t in unit_importance], [torch.argsort(t).tolist() for t in group_importance]
    # Importances shifted to >= 0, in removal order, as plain floats (the loop reads them often).
    unit_values = [[float(t[i]) - lowest for i in order] for t, order in zip(unit_importance, orders[0])]
    group_values = [[float(t[i]) - lowest for i in order] for t, order in zip(group_importance, orders[1])]
    remaining = [sum(u) + sum(g) for u, g in zip(unit_values, group_values)]
    units = [len(t) for t in unit_importance]
    width = list(widths)  # neurons kept per layer (the last group of a layer may be short)
    removed_units = [0] * len(units)
    removed_groups = [0] * len(width)

    def group_width(layer: int, group: int) -> int:
        return min(group_size, widths[layer] - group * group_size)

    def cost(layer: int, kept_units: int, kept_width: int) -> float:
        return table.layer(kept_units * heads_per_unit, kept_width)

    predicted = table.predict([u * heads_per_unit for u in units], width)
    while predicted > target:
        best = None
        needed = predicted - target
        layers_left = sum(1 for u in units if u)
        for layer in range(len(widths)):
            if not units[layer]:
                continue  # removed
            now = cost(layer, units[layer], width[layer])
            if units[layer] > 1:
                saved = now - cost(layer, units[layer] - 1, width[layer])
                best = _better(best, needed, (unit_values[layer][removed_units[layer]], saved, layer, "unit"))
            if removed_groups[layer] < len(orders[1][layer]) - 1:
                group = orders[1][layer][removed_groups[layer]]
                saved = now - cost(layer, units[layer], width[layer] - group_width(layer, group))
                best = _better(best, needed, (group_values[layer][removed_groups[layer]], saved, layer, "group"))
            if layers_left > 1:
                best = _better(best, needed, (remaining[layer], now - cost(layer, 0, 0), layer, "layer"))
        if best is None:
            break  # one layer is left, with one unit and one group
        _, saved, layer, kind = best
        if kind == "unit":
            remaining[layer] -= unit_values[layer][removed_units[layer]]
            units[layer] -= 1
            removed_units[layer] += 1
        elif kind == "group":
            remaining[layer] -= group_values[layer][removed_groups[layer]]
            width[layer] -= group_width(layer, orders[1][layer][removed_groups[layer]])
            removed_groups[layer] += 1
        else:
            remaining[layer], units[layer], width[layer] = 0.0, 0, 0
            removed_units[layer], removed_groups[layer] = len(orders[0][layer]), len(orders[1][layer])
        predicted -= saved
    while True:  # give the overshoot back to the layers left
        slack, best = target - predicted, None
        for layer in range(len(widths)):
            if not units[layer]:
                continue
            now = cost(layer, units[layer], width[layer])
            if removed_units[layer]:
                added = cost(layer, units[layer] + 1, width[layer]) - now
                best = _worthier(best, slack, (unit_values[layer][removed_units[layer] - 1], added, layer, "unit"))
            if removed_groups[layer]:
                group = orders[1][layer][removed_groups[layer] - 1]
                added = cost(layer, units[layer], width[layer] + group_width(layer, group)) - now
                best = _worthier(best, slack, (group_values[layer][removed_groups[layer] - 1], added, layer, "group"))
        if best is None:
            break
        _, added, layer, kind = best
        if kind == "unit":
            removed_units[layer] -= 1
            units[layer] += 1
        else:
            removed_groups[layer] -= 1
            width[layer] += group_width(layer, orders[1][layer][removed_groups[layer]])
        predicted += added
    return Structure(units=[_kept(order, removed) for order, removed in zip(orders[0], removed_units)],
                     groups=[_kept(order, removed) for order, removed in zip(orders[1], removed_groups)],
                     predicted_ms=predicted)


def _better(best, needed: float, candidate):
    """The candidate with the least importance per ms saved, counting at most the ``needed`` ms
    (ones that save nothing come last)."""
    importance, saved, _, _ = candidate
    ratio = importance / min(saved, needed) if saved > MIN_SAVING_MS else math.inf
    candidate_key = (ratio, -saved)
    if best is None or candidate_key < best[0]:
        return candidate_key, *candidate[1:]
    return best


def _worthier(best, slack: float, candidate):
    """Of the units that fit in ``slack`` ms, the most important per ms added."""
    importance, added, _, _ = candidate
    if added > slack:
        return best
    key = importance / max(added, MIN_SAVING_MS)
    if best is None or key > best[0]:
        return key, *candidate[1:]
    return best


def _kept(order: list[int], removed: int) -> torch.Tensor:
    kept = torch.ones(len(order), dtype=torch.bool)
    kept[order[:removed]] = False
    return kept


def heads_removed_together(block_size: int, view) -> int:
    """Query heads a structure removes at once: a block's worth of heads (of key/value heads, in
    grouped-query attention, each with its group), at least one."""
    return max(1, block_size // view.head_size) * view.group_size


def speed_table(context) -> LatencyTable:
    """The latency table of the trial's model, runtime, precision, device and latency setting
    (cached beside the teacher), after checking that the target is reachable."""
    s = context.settings
    table = table_for(context.student, context.cache_dir, s, runtime=s.runtime, precision=s.inference_precision,
                      device=context.device, threads=s.latency.threads or torch.get_num_threads(),
                      measurer=context.measurer)
    check_reachable(table, s.target_speedup, min_heads=heads_removed_together(s.block_size, _views(context.student)[0]))
    return table


def table_for(model, cache_dir, settings, *, runtime: str, precision: str, device: torch.device,
              threads: int, measurer=None) -> LatencyTable:
    """The cached (or now measured) table of ``model`` served in ``runtime`` at ``precision``, with
    the trial settings' latency shape, timed where the runtime serves that precision."""
    from prunetune.trainables.runtimes import runtime_of

    device = runtime_of(runtime).serving_device(precision, device)
    return cached_table(model, cache_dir, runtime=runtime, precision=precision, device=device,
                        batch_size=settings.latency.batch_size, seq_len=settings.latency.seq_len, threads=threads,
                        min_width=table_min_width(model), measurer=measurer)


def table_min_width(model) -> int:
    """The narrowest FFN width a table times: one FFN group, the step a pruner removes."""
    return ffn_group_size(max(view.ffn_width for view in _views(model)))


def prepare_tables(config, model_dir, cache_dir, measurer=None) -> list[LatencyTable]:
    """Every table the search's trials will read, measured (or found) before they start.

    A trial that measured its own table would share the node with another trial's training,
    and a table measured that way is cached slow; the driver measures them on the idle node
    instead (the same cache, so another search with the same teacher finds them). The thread
    count is the trial's: ``latency.threads``, else the cores a trial is given.
    """
    from prunetune.config import speed_table_settings
    from prunetune.trainables.families.compaction import load_model_dir
    from prunetune.trainables.training.precision import resolve_device

    pairs = speed_table_settings(config)
    if not pairs:
        return []
    model = load_model_dir(model_dir)
    settings = config.trial
    threads = settings.latency.threads or max(1, int(config.cluster.cpus_per_trial))
    device = resolve_device(settings.device)
    return [table_for(model, cache_dir, settings, runtime=runtime, precision=precision, device=device,
                      threads=threads, measurer=measurer) for runtime, precision in pairs]


def _views(model):
    from prunetune.trainables.families import family_of
    from prunetune.trainables.families._modeling import layer_views

    return layer_views(model, family_of(model))
