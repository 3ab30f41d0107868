"""The reweighted group-lasso pruner (see ``group_lasso.py`` for the method).

A trial runs three phases:

1. warm-up (``trial.warmup_fraction`` of the steps): plain distillation, dense;
2. penalty: the loss gains ``p * sum_g gamma_g * ||W_g||_2`` over every group of every
   prunable matrix, with ``gamma_g = 1 / (||W_g||_2 + eps)`` held fixed between
   recomputations every ``reweight_every`` steps. Reweighting makes the penalty act like a
   count of non-zero groups: a group that is already small is pushed harder;
3. hard prune, then retraining (``trial.cooldown_fraction`` of the steps): per matrix, the
   groups with the smallest norms are pruned to the target ratio and the mask stays fixed
   (masked weights get no gradient) until the end.

Groups follow the hybrid layout, so that pruned structure becomes speed after compaction:
attention maps are cut into tiles ``block_rows`` wide along the head dimension and
``block_cols`` wide along the hidden dimension; an FFN neuron is one group. Heads whose Q,
K or V is pruned away are removed whole, and the tiles this frees go back to the largest
pruned tiles of live heads, so the final sparsity is the target.
"""

from __future__ import annotations

import torch
from torch import nn

from prunetune.trainables.families import FamilySpec
from prunetune.trainables.families._modeling import LayerView
from prunetune.trainables.methods._masks import (
    ATTENTION_ROLES,
    QKV,
    bake_masks,
    give_back_blocks,
    install_attention_masks,
    install_ffn_mask,
    keep_count,
    kill_dead_heads,
    top_k_mask,
    unit_rows_of,
    wrapped_views,
)
from prunetune.trainables.methods._pruner import Pruner

#: Keeps the reweighting finite for groups whose norm reaches zero (the paper's choice).
REWEIGHT_EPSILON = 1e-3


def penalty_phase(step: int, *, max_steps: int, warmup_fraction: float, cooldown_fraction: float) -> bool:
    """Whether ``step`` falls between the warm-up and the hard prune."""
    return round(warmup_fraction * max_steps) <= step < prune_step(max_steps=max_steps, cooldown_fraction=cooldown_fraction)


def prune_step(*, max_steps: int, cooldown_fraction: float) -> int:
    """The step at which the hard prune happens; the rest of the trial retrains."""
    return round((1.0 - cooldown_fraction) * max_steps)


def group_lasso_sparsity(step: int, *, max_steps: int, final: float, cooldown_fraction: float) -> float:
    """Dense until the hard prune, the target afterwards (no ramp: the penalty did the work)."""
    return final if step >= prune_step(max_steps=max_steps, cooldown_fraction=cooldown_fraction) else 0.0


def revive_heads(hard: dict[str, torch.Tensor], scores: dict[str, torch.Tensor], alive: dict[str, torch.Tensor], *,
                 rows_per_unit: dict[str, int], target_kept: int) -> None:
    """Bring dead heads back (in place) until the live ones can hold ``target_kept`` tiles.

    Norms of whole heads differ a lot, so a per-matrix top-k can empty so many heads that
    the tiles freed by their removal no longer fit in the live ones, and the sparsity would
    overshoot. The dead heads with the largest tiles come back first, each with its best
    Q, K and V tile (so that compaction keeps it); ``give_back_blocks`` then fills them.
    ``alive`` (per role, per block row along the head dimension) is updated; it takes
    precedence over ``min_head_density``, since an exact sparsity is what the user asked for.
    A unit is ``rows_per_unit[role]`` block rows of each role: a head's (or a key/value
    head's with its query heads), or one block row where a block spans several heads.
    """
    def span(role: str, unit: int) -> slice:
        return slice(unit * rows_per_unit[role], (unit + 1) * rows_per_unit[role])

    tiles_per_unit = (sum(rows_per_unit[role] * hard[role].shape[1] for role in QKV)
                      + rows_per_unit["attention_output"] * hard["attention_output"].shape[0])
    count = alive["query"].numel() // rows_per_unit["query"]
    strength = [sum(float(scores[role][span(role, u)].sum()) for role in QKV)
                + float(scores["attention_output"][:, span("attention_output", u)].sum()) for u in range(count)]
    order = sorted(range(count), key=lambda u: -strength[u])
    dead = [u for u in order if not alive["query"][span("query", u)].any()]
    live = count - len(dead)
    while live * tiles_per_unit < target_kept and dead:
        unit = dead.pop(0)
        live += 1
        for role in ATTENTION_ROLES:
            alive[role][span(role, unit)] = True
        for role in QKV:
            rows = span(role, unit)
            best = scores[role][rows].argmax()
            hard[role][rows].view(-1)[best] = 1.0


def tile_norms(weight: torch.Tensor, rows: int, cols: int) -> torch.Tensor:
    """L2 norm of each ``rows`` x ``cols`` tile of ``weight`` (differentiable, finite at zero)."""
    out_features, in_features = weight.shape
    tiles = weight.float().reshape(out_features // rows, rows, in_features // cols, cols)
    return (tiles.pow(2).sum(dim=(1, 3)) + 1e-12).sqrt()


class GroupLassoPruner(Pruner):
    """Owns the group weights and the fixed masks (all checkpointed buffers).

    ``penalty(step)`` is added to the loss during the penalty phase; the first step at a
    non-zero scheduled sparsity performs the hard prune and keeps that mask from then on.
    """

    def __init__(self, model: nn.Module, spec: FamilySpec, *, block_rows: int, block_cols: int, penalty: float,
                 max_steps: int, warmup_fraction: float, cooldown_fraction: float, reweight_every: int,
                 final_sparsity: float = 0.0, min_head_density: float = 0.0):
        super().__init__()
        self.spec, self.block_rows, self.block_cols, self.penalty_weight = spec, block_rows, block_cols, penalty
        self.min_head_density, self.final_sparsity = min_head_density, final_sparsity
        self.schedule = dict(max_steps=max_steps, warmup_fraction=warmup_fraction, cooldown_fraction=cooldown_fraction)
        self.reweight_every = reweight_every
        self.views = wrapped_views(model, spec)
        for index, view in enumerate(self.views):
            for name, norms in self._group_norms(view).items():
                self.register_buffer(f"gamma_l{index}_{name}", torch.zeros_like(norms))
                self.register_buffer(f"mask_l{index}_{name}", torch.ones_like(norms))
        # The sparsity of the hard prune, 0 until it happens; a buffer, so a resumed trial keeps it.
        self.register_buffer("pruned_to", torch.tensor(0.0, dtype=torch.float64))

    @property
    def pruned(self) -> bool:
        return bool(self.pruned_to > 0)

    @property
    def current_sparsity(self) -> float:
        return float(self.pruned_to)

    # ------------------------------------------------------------------ lifecycle

    def before_step(self, step: int, student: nn.Module) -> nn.Module:
        self.update_masks(group_lasso_sparsity(step, max_steps=self.schedule["max_steps"], final=self.final_sparsity,
                                               cooldown_fraction=self.schedule["cooldown_fraction"]))
        return student

    def finish(self, student: nn.Module) -> nn.Module:
        self.update_masks(self.final_sparsity)
        bake_masks(student, self.spec)
        return student

    # ------------------------------------------------------------------ groups

    def _tile_shape(self, role: str) -> tuple[int, int]:
        # The attention output's head dimension is its input: the tile is transposed there.
        return (self.block_cols, self.block_rows) if role == "attention_output" else (self.block_rows, self.block_cols)

    def _group_norms(self, view: LayerView) -> dict[str, torch.Tensor]:
        """Norm of every group of one layer: one grid per attention map, one vector for the FFN."""
        norms = {}
        for role in ATTENTION_ROLES:
            weight = view.linear(role).weight
            rows, cols = self._tile_shape(role)
            if weight.shape[0] % rows or weight.shape[1] % cols:
                raise ValueError(f"group shape {rows}x{cols} does not tile a {tuple(weight.shape)} matrix")
            norms[role] = tile_norms(weight, rows, cols)
        incoming = view.linear("ffn_in").weight.float().pow(2).sum(dim=1)
        outgoing = view.linear("ffn_out").weight.float().pow(2).sum(dim=0)
        norms["ffn"] = (incoming + outgoing + 1e-12).sqrt()
        return norms

    def group_norms(self) -> list[dict[str, torch.Tensor]]:
        """Current group norms of every layer (detached)."""
        with torch.no_grad():
            return [self._group_norms(view) for view in self.views]

    def _buffer(self, kind: str, index: int, name: str) -> torch.Tensor:
        return getattr(self, f"{kind}_l{index}_{name}")

    # ------------------------------------------------------------------ penalty

    @torch.no_grad()
    def reweight(self) -> None:
        """gamma_g = 1 / (||W_g|| + eps), fixed until the next reweighting."""
        for index, norms in enumerate(self.group_norms()):
            for name, value in norms.items():
                self._buffer("gamma", index, name).copy_(1.0 / (value + REWEIGHT_EPSILON))

    def penalty(self, step: int) -> torch.Tensor | None:
        """p * sum_l sum_g gamma_g ||W_g|| during the penalty phase; None outside it."""
        if self.penalty_weight == 0 or self.pruned or not penalty_phase(step, **self.schedule):
            return None
        first = round(self.schedule["warmup_fraction"] * self.schedule["max_steps"])
        if (step - first) % self.reweight_every == 0 or not bool(self.gamma_l0_ffn.any()):
            self.reweight()
        total = torch.zeros((), device=self.gamma_l0_ffn.device)
        for index, view in enumerate(self.views):
            for name, norms in self._group_norms(view).items():
                total = total + (self._buffer("gamma", index, name) * norms).sum()
        return self.penalty_weight * total

    # ------------------------------------------------------------------ masks

    def update_masks(self, sparsity: float) -> None:
        """Dense at sparsity 0; the first non-zero sparsity hard-prunes and fixes the mask."""
        if sparsity > 0 and not self.pruned:
            self.hard_prune(sparsity)
        if self.pruned:
            self._install_masks()

    @torch.no_grad()
    def hard_prune(self, sparsity: float) -> None:
        """Per matrix, keep the largest-norm groups; remove dead heads whole; fix the mask."""
        for index, (view, norms) in enumerate(zip(self.views, self.group_norms())):
            hard = {role: top_k_mask(norms[role], keep_count(norms[role].numel(), sparsity)) for role in ATTENTION_ROLES}
            target_kept = sum(int(h.sum().item()) for h in hard.values())
            unit_rows = unit_rows_of(view)
            alive = kill_dead_heads(hard, unit_rows=unit_rows, block_rows=self.block_rows,
                                    min_head_density=self.min_head_density)
            scores = {role: norms[role] for role in ATTENTION_ROLES}
            revive_heads(hard, scores, alive, target_kept=target_kept,
                         rows_per_unit={role: max(rows // self.block_rows, 1) for role, rows in unit_rows.items()})
            give_back_blocks(hard, scores, alive, target_kept)
            hard["ffn"] = top_k_mask(norms["ffn"], keep_count(norms["ffn"].numel(), sparsity))
            for name, mask in hard.items():
                self._buffer("mask", index, name).copy_(mask)
        self.pruned_to.fill_(sparsity)

    def _install_masks(self) -> None:
        for index, view in enumerate(self.views):
            masks = {role: self._buffer("mask", index, role) for role in ATTENTION_ROLES}
            install_attention_masks(view, masks, rows=self.block_rows, cols=self.block_cols)
            install_ffn_mask(view, self._buffer("mask", index, "ffn"))
