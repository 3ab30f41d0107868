"""One block pruner, two scorers: movement (learned) and magnitude (block norms).

Attention maps are pruned in b x b blocks, the FFN one neuron at a time ("hybrid",
Lagunas et al. 2021). Masks are top-k per matrix, so the kept fraction is exact at every
step. Heads whose Q, K or V is pruned away (or keeps less than ``min_head_density`` of
its blocks) are removed whole, and the blocks this frees go back to the best pruned
blocks of live heads, or to more FFN neurons when live heads are full: the final sparsity
is the target.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from prunetune.metrics import PREDICTED_SPEEDUP
from prunetune.trainables.families import FamilySpec
from prunetune.trainables.families._modeling import LayerView
from prunetune.trainables.measure.latency_table import LatencyTable
from prunetune.trainables.methods._masks import (
    ATTENTION_ROLES,
    bake_masks,
    block_rows_alive,
    give_back_blocks,
    install_attention_masks,
    install_ffn_mask,
    keep_count,
    kill_dead_heads,
    top_k_mask,
    unit_rows_of,
    with_straight_through,
    wrapped_views,
)
from prunetune.trainables.methods._pruner import Pruner
from prunetune.trainables.methods._speed import (
    Structure,
    choose_structure,
    ffn_group_size,
    heads_removed_together,
    target_ms,
)


def block_grid(linear: nn.Module, block_size: int) -> tuple[int, int]:
    if linear.out_features % block_size or linear.in_features % block_size:
        raise ValueError(f"block size {block_size} does not tile a {linear.out_features}x{linear.in_features} matrix")
    return linear.out_features // block_size, linear.in_features // block_size


class MovementScorer(nn.Module):
    """One learned score per block and per FFN neuron, trained through a straight-through estimator:
    the gradient reaching a block score is the block's summed movement signal, dL/dW' * W."""

    def __init__(self, views: list[LayerView], block_size: int):
        super().__init__()
        self.scores = nn.ParameterDict()
        for index, view in enumerate(views):
            device = view.linear("query").weight.device
            for role in ATTENTION_ROLES:
                self.scores[f"l{index}_{role}"] = nn.Parameter(
                    torch.zeros(block_grid(view.linear(role), block_size), device=device))
            self.scores[f"l{index}_ffn"] = nn.Parameter(torch.zeros(view.ffn_width, device=device))

    def attention(self, index: int, role: str, view: LayerView) -> torch.Tensor:
        return self.scores[f"l{index}_{role}"]

    def ffn(self, index: int, view: LayerView) -> torch.Tensor:
        return self.scores[f"l{index}_ffn"]

    def learned(self) -> list[nn.Parameter]:
        return list(self.scores.values())

    def additive(self, scores: torch.Tensor) -> torch.Tensor:
        """Scores as importances that add up over blocks: accumulated movement already does."""
        return scores


class MagnitudeScorer(nn.Module):
    """Block L2 norms of the current weights (and per-neuron norms of the FFN): the baseline."""

    def __init__(self, block_size: int):
        super().__init__()
        self.block_size = block_size

    def attention(self, index: int, role: str, view: LayerView) -> torch.Tensor:
        weight = view.linear(role).weight.detach()
        rows, cols = block_grid(view.linear(role), self.block_size)
        b = self.block_size
        return weight.reshape(rows, b, cols, b).pow(2).sum(dim=(1, 3)).sqrt()

    def ffn(self, index: int, view: LayerView) -> torch.Tensor:
        incoming = view.linear("ffn_in").weight.detach().pow(2).sum(dim=1)
        outgoing = view.linear("ffn_out").weight.detach().pow(2).sum(dim=0)
        return (incoming + outgoing).sqrt()

    def learned(self) -> list[nn.Parameter]:
        return []

    def additive(self, scores: torch.Tensor) -> torch.Tensor:
        """Norms as importances that add up over blocks: their squares (sums of squared weights)."""
        return scores.pow(2)


@dataclass(frozen=True)
class SpeedTarget:
    """Prune to a speed-up instead of a sparsity (see ``_speed``): the table, the target, and the
    schedule's progress (0 dense .. 1 target) at each step."""

    table: LatencyTable
    speedup: float
    progress_at: Callable[[int], float]


class BlockPruner(Pruner):
    """Top-k block masks from a scorer, following a sparsity schedule; or, given a
    :class:`SpeedTarget`, whole heads, FFN groups and layers chosen to reach a speed."""

    def __init__(self, model: nn.Module, spec: FamilySpec, *, scorer: Callable[[list[LayerView]], nn.Module],
                 block_size: int, sparsity_at: Callable[[int], float], final_sparsity: float | None,
                 min_head_density: float = 0.0, mask_learning_rate: float = 1e-2, speed: SpeedTarget | None = None):
        super().__init__()
        self.mask_learning_rate = mask_learning_rate
        self.spec, self.block_size, self.min_head_density = spec, block_size, min_head_density
        self.sparsity_at, self.final_sparsity = sparsity_at, final_sparsity
        self.views = wrapped_views(model, spec)
        self.scorer = scorer(self.views)
        self.current_sparsity = 0.0
        self.speed = speed
        self.structure: Structure | None = None  # the last one chosen, pruning to a speed
        self.dense_weights = sum(_layer_weights(view, view.num_heads, view.ffn_width) for view in self.views)

    def mask_parameters(self) -> list[nn.Parameter]:
        return self.scorer.learned()

    def before_step(self, step: int, student: nn.Module) -> nn.Module:
        if self.speed is not None:
            self.update_speed_masks(self.speed.progress_at(step))
        else:
            self.update_masks(self.sparsity_at(step))
        return student

    def finish(self, student: nn.Module) -> nn.Module:
        if self.speed is not None:
            self.update_speed_masks(1.0)
        else:
            self.update_masks(self.final_sparsity)
        bake_masks(student, self.spec)
        return student

    def removed_layers(self) -> frozenset[int]:
        return self.structure.removed_layers if self.structure is not None else frozenset()

    def metrics(self) -> dict[str, float]:
        if self.speed is None or self.structure is None:
            return {}
        return {PREDICTED_SPEEDUP: self.speed.table.dense_ms / self.structure.predicted_ms}

    # ------------------------------------------------------------------ to a speed

    @property
    def units_per_block(self) -> int:
        """Attention units removed together: a block taller than a head (a key/value head, in
        grouped-query attention) spans several."""
        return max(1, self.block_size // self.views[0].head_size)

    @property
    def heads_per_unit(self) -> int:
        """Query heads removed together (what the latency table counts)."""
        return heads_removed_together(self.block_size, self.views[0])

    def update_speed_masks(self, progress: float) -> None:
        """Keep the heads and FFN groups that reach the scheduled latency at ``progress``."""
        target = target_ms(self.speed.table, self.speed.speedup, progress)
        group = ffn_group_size(max(view.ffn_width for view in self.views))
        scores = [{role: self.scorer.attention(i, role, view) for role in ATTENTION_ROLES}
                  for i, view in enumerate(self.views)]
        ffn_scores = [self.scorer.ffn(i, view) for i, view in enumerate(self.views)]
        structure = choose_structure(
            [self._unit_importance(view, layer_scores) for view, layer_scores in zip(self.views, scores)],
            [_group_sums(self.scorer.additive(s.detach().float()), group) for s in ffn_scores],
            table=self.speed.table, target=target, heads_per_unit=self.heads_per_unit, group_size=group,
            widths=[view.ffn_width for view in self.views])
        self.structure = structure
        removed = structure.removed_layers
        kept = 0
        for index, (view, layer_scores, ffn, units, groups) in enumerate(
                zip(self.views, scores, ffn_scores, structure.units, structure.groups)):
            units_alive = units.repeat_interleave(self.units_per_block)[: view.num_units].to(ffn.device)
            neurons_alive = groups.repeat_interleave(group)[: view.ffn_width].to(ffn.device)
            self._install_structure(view, layer_scores, ffn, units_alive, neurons_alive)
            # A removed layer passes its input through, layer norms included: the rest of the
            # model learns without it, and compaction leaves nothing of it (no cost at all).
            view.set_skipped(index in removed)
            kept += _layer_weights(view, int(units_alive.sum()) * view.group_size, int(neurons_alive.sum()))
        self.current_sparsity = 1.0 - kept / self.dense_weights

    def _unit_importance(self, view: LayerView, scores: dict[str, torch.Tensor]) -> torch.Tensor:
        """Each attention unit's summed importance over its Q, K, V rows and its output columns."""
        b = self.block_size
        per_unit = torch.zeros(view.num_units, device=scores["query"].device)
        for role in ATTENTION_ROLES:
            additive = self.scorer.additive(scores[role].detach().float())
            blocks = additive.sum(dim=0 if role == "attention_output" else 1)  # per block along the heads
            per_row = blocks.repeat_interleave(b) / b
            per_unit += per_row.view(view.num_units, view.unit_rows(role)).sum(dim=1)
        return per_unit.view(-1, self.units_per_block).sum(dim=1).cpu()

    def _install_structure(self, view: LayerView, scores: dict[str, torch.Tensor], ffn_scores: torch.Tensor,
                           units_alive: torch.Tensor, neurons_alive: torch.Tensor) -> None:
        b = self.block_size
        masks = {}
        for role in ATTENTION_ROLES:
            rows_alive = block_rows_alive(units_alive, view.unit_rows(role), b).float()
            shape = scores[role].shape
            hard = (rows_alive[None, :].expand(shape) if role == "attention_output"
                    else rows_alive[:, None].expand(shape)).contiguous()
            masks[role] = with_straight_through(hard, scores[role])
        install_attention_masks(view, masks, rows=b, cols=b)
        install_ffn_mask(view, with_straight_through(neurons_alive.float(), ffn_scores))

    # ------------------------------------------------------------------ to a sparsity

    def update_masks(self, sparsity: float) -> None:
        """Compute every mask for ``sparsity`` and install it on the wrapped maps."""
        self.current_sparsity = sparsity
        for index, view in enumerate(self.views):
            unplaced_weights = self._attention_masks(index, view, sparsity)
            self._ffn_mask(index, view, sparsity, extra_weights=unplaced_weights)

    def _ffn_mask(self, index: int, view: LayerView, sparsity: float, *, extra_weights: int = 0) -> None:
        """Top-k FFN neurons; ``extra_weights`` the attention could not keep go to more neurons."""
        scores = self.scorer.ffn(index, view)
        weights_per_neuron = view.linear("ffn_in").in_features + view.linear("ffn_out").out_features
        keep = min(scores.numel(), keep_count(scores.numel(), sparsity) + extra_weights // weights_per_neuron)
        install_ffn_mask(view, with_straight_through(top_k_mask(scores.detach(), keep), scores))

    def _attention_masks(self, index: int, view: LayerView, sparsity: float) -> int:
        """Install the block masks; return how many kept weights found no place in live heads."""
        scores = {role: self.scorer.attention(index, role, view) for role in ATTENTION_ROLES}
        hard = {role: top_k_mask(s.detach(), keep_count(s.numel(), sparsity)) for role, s in scores.items()}
        target_kept = sum(int(h.sum().item()) for h in hard.values())
        alive_rows = kill_dead_heads(hard, unit_rows=unit_rows_of(view), block_rows=self.block_size,
                                     min_head_density=self.min_head_density)
        unplaced_blocks = give_back_blocks(hard, {r: s.detach() for r, s in scores.items()}, alive_rows, target_kept)
        masks = {role: with_straight_through(hard[role], scores[role]) for role in ATTENTION_ROLES}
        install_attention_masks(view, masks, rows=self.block_size, cols=self.block_size)
        return unplaced_blocks * self.block_size ** 2


def _layer_weights(view: LayerView, heads: int, neurons: int) -> int:
    """Prunable weights of a layer with ``heads`` (query) heads and ``neurons`` FFN neurons (a
    gated FFN's gate rows included; grouped-query keys and values once per group)."""
    hidden = view.linear("attention_output").out_features
    kv_heads = heads // view.group_size
    ffn_maps = 3 if view.spec.gated_ffn else 2
    return hidden * view.head_size * (2 * heads + 2 * kv_heads) + ffn_maps * hidden * neurons


def _group_sums(values: torch.Tensor, group: int) -> torch.Tensor:
    """Sums over consecutive groups of ``group`` values (the last group may be shorter)."""
    padded = torch.nn.functional.pad(values, (0, (-len(values)) % group))
    return padded.view(-1, group).sum(dim=1).cpu()
