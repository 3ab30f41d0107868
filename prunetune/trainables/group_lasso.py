"""Block-structured pruning with reweighted group lasso (Li et al. 2020, arXiv 2009.08065).

A trial runs three phases:

1. warm-up (``trial.warmup_fraction`` of the steps): plain distillation, dense;
2. penalty: the loss gains ``p * sum_g gamma_g * ||W_g||_2`` over every group of every
   prunable matrix, with ``gamma_g = 1 / (||W_g||_2 + eps)`` held fixed between
   recomputations every ``trial.reweight_every`` steps. Reweighting makes the penalty act
   like a count of non-zero groups: a group that is already small is pushed harder;
3. hard prune, then retraining (``trial.cooldown_fraction`` of the steps): per matrix, the
   groups with the smallest norms are pruned to the target ratio and the mask stays fixed
   (the masked weights get no gradient) until the end.

Groups follow the hybrid layout, so that pruned structure becomes speed after compaction:
attention matrices are cut into tiles ``block_rows`` wide along the head dimension (rows of
Q, K, V; columns of the attention output) and ``block_cols`` wide along the hidden
dimension; an FFN neuron is one group (its row of the intermediate matrix and its column
of the output matrix). Heads whose Q, K or V is fully pruned are removed whole, and the
tiles freed that way go back to the largest pruned tiles of live heads, so the final
sparsity is the target (as in :mod:`prunetune.trainables.pruning`).
"""

from __future__ import annotations

import torch
from torch import nn

from prunetune.builtins import ModelDims
from prunetune.trainables.pruning import (
    ATTENTION_MATRICES,
    _LayerModules,
    bake_masks,
    bert_layers,
    give_back_blocks,
    keep_count,
    kill_dead_heads,
    top_k_mask,
    wrap_layer,
)

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


def group_shape_problems(*, block_rows: int, block_cols: int, dims: ModelDims) -> list[str]:
    """Why a group shape cannot tile the attention matrices of ``dims`` (empty when it can)."""
    problems = []
    head = dims.head_size
    if dims.hidden_size % block_rows or not (head % block_rows == 0 or block_rows % head == 0):
        problems.append(
            f"trial.block_rows = {block_rows}: must divide the hidden size and either divide the head size "
            f"or be a multiple of it, for {dims.describe()}"
        )
    if dims.hidden_size % block_cols:
        problems.append(f"trial.block_cols = {block_cols}: must divide the hidden size, for {dims.describe()}")
    return problems


def revive_heads(hard: dict[str, torch.Tensor], scores: dict[str, torch.Tensor], alive: torch.Tensor, *,
                 rows_per_head: int, target_kept: int) -> None:
    """Bring dead heads back (in place) until the live ones can hold ``target_kept`` tiles.

    Norms of whole heads differ a lot, so a per-matrix top-k can empty so many heads that
    the tiles freed by their removal no longer fit in the live ones, and the sparsity would
    overshoot. The dead heads with the largest tiles come back first, each with its best
    Q, K and V tile (so that compaction keeps it); ``give_back_blocks`` then fills them.
    ``alive`` (per block row along the head dimension) is updated; it takes precedence
    over ``min_head_density``, since an exact sparsity is what the user asked for.
    """
    per_row = sum(hard[name].shape[1] for name in ("query", "key", "value")) + hard["output"].shape[0]
    units = alive.view(-1, rows_per_head)  # one unit: the block rows of a head (or of whole heads)
    strength = sum(scores[name].sum(dim=1) for name in ("query", "key", "value")) + scores["output"].sum(dim=0)
    order = strength.view(-1, rows_per_head).sum(dim=1).argsort(descending=True).tolist()
    dead = [unit for unit in order if not units[unit].any()]
    while int(alive.sum()) * per_row < target_kept and dead:
        rows = slice(dead[0] * rows_per_head, (dead.pop(0) + 1) * rows_per_head)
        alive[rows] = True
        for name in ("query", "key", "value"):
            best = scores[name][rows].argmax()
            hard[name][rows].view(-1)[best] = 1.0


def tile_norms(weight: torch.Tensor, rows: int, cols: int) -> torch.Tensor:
    """L2 norm of each ``rows`` x ``cols`` tile of ``weight`` (differentiable, finite at zero)."""
    out_features, in_features = weight.shape
    tiles = weight.float().reshape(out_features // rows, rows, in_features // cols, cols)
    return (tiles.pow(2).sum(dim=(1, 3)) + 1e-12).sqrt()


class GroupLassoPruner(nn.Module):
    """Owns the group weights and the fixed masks of a BERT model (all checkpointed buffers).

    ``penalty(step)`` is added to the loss during the penalty phase; ``update_masks(s)``
    with ``s > 0`` performs the hard prune once and keeps that mask from then on.
    """

    def __init__(self, model: nn.Module, *, block_rows: int, block_cols: int, penalty: float,
                 max_steps: int, warmup_fraction: float, cooldown_fraction: float, reweight_every: int,
                 min_head_density: float = 0.0):
        super().__init__()
        self.block_rows, self.block_cols, self.penalty_weight = block_rows, block_cols, penalty
        self.min_head_density = min_head_density
        self.schedule = dict(max_steps=max_steps, warmup_fraction=warmup_fraction, cooldown_fraction=cooldown_fraction)
        self.reweight_every = reweight_every
        self.layers = [wrap_layer(layer) for layer in bert_layers(model)]
        for index, layer in enumerate(self.layers):
            for name, norms in self._group_norms(layer).items():
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

    # ------------------------------------------------------------------ groups

    def _tile_shape(self, name: str) -> tuple[int, int]:
        # The attention output's head dimension is its input: the tile is transposed there.
        return (self.block_cols, self.block_rows) if name == "output" else (self.block_rows, self.block_cols)

    def _group_norms(self, layer: _LayerModules) -> dict[str, torch.Tensor]:
        """Norm of every group of one layer: one grid per attention matrix, one vector for the FFN."""
        norms = {}
        for name in ATTENTION_MATRICES:
            weight = layer.attention(name).weight
            rows, cols = self._tile_shape(name)
            if weight.shape[0] % rows or weight.shape[1] % cols:
                raise ValueError(f"group shape {rows}x{cols} does not tile a {tuple(weight.shape)} matrix")
            norms[name] = tile_norms(weight, rows, cols)
        incoming = layer.intermediate.weight.float().pow(2).sum(dim=1)
        outgoing = layer.ffn_output.weight.float().pow(2).sum(dim=0)
        norms["ffn"] = (incoming + outgoing + 1e-12).sqrt()
        return norms

    def group_norms(self) -> list[dict[str, torch.Tensor]]:
        """Current group norms of every layer (detached)."""
        with torch.no_grad():
            return [self._group_norms(layer) for layer in self.layers]

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
        for index, layer in enumerate(self.layers):
            for name, norms in self._group_norms(layer).items():
                total = total + (self._buffer("gamma", index, name) * norms).sum()
        return self.penalty_weight * total

    # ------------------------------------------------------------------ masks

    def mask_parameters(self) -> list[nn.Parameter]:
        return []  # nothing learned besides the weights

    def update_masks(self, sparsity: float) -> None:
        """Dense at sparsity 0; the first non-zero sparsity hard-prunes and fixes the mask."""
        if sparsity > 0 and not self.pruned:
            self.hard_prune(sparsity)
        if self.pruned:
            self._install_masks()

    @torch.no_grad()
    def hard_prune(self, sparsity: float) -> None:
        """Per matrix, keep the largest-norm groups; remove dead heads whole; fix the mask."""
        for index, (layer, norms) in enumerate(zip(self.layers, self.group_norms())):
            hard = {name: top_k_mask(norms[name], keep_count(norms[name].numel(), sparsity)) for name in ATTENTION_MATRICES}
            target_kept = sum(int(h.sum().item()) for h in hard.values())
            alive = kill_dead_heads(hard, head_size=layer.head_size, block_rows=self.block_rows,
                                    min_head_density=self.min_head_density)
            scores = {name: norms[name] for name in ATTENTION_MATRICES}
            revive_heads(hard, scores, alive, rows_per_head=max(layer.head_size // self.block_rows, 1),
                         target_kept=target_kept)
            give_back_blocks(hard, scores, alive, target_kept)
            hard["ffn"] = top_k_mask(norms["ffn"], keep_count(norms["ffn"].numel(), sparsity))
            for name, mask in hard.items():
                self._buffer("mask", index, name).copy_(mask)
        self.pruned_to.fill_(sparsity)

    def _install_masks(self) -> None:
        for index, layer in enumerate(self.layers):
            for name in ATTENTION_MATRICES:
                mask = self._buffer("mask", index, name)
                rows, cols = self._tile_shape(name)
                module = layer.attention(name)
                module.weight_mask = mask.repeat_interleave(rows, 0).repeat_interleave(cols, 1)
                # Q, K, V rows that are fully masked lose their bias too (compaction removes them).
                module.bias_mask = None if name == "output" else mask.any(dim=1).float().repeat_interleave(rows)
            ffn = self._buffer("mask", index, "ffn")
            layer.intermediate.weight_mask, layer.intermediate.bias_mask = ffn[:, None], ffn
            layer.ffn_output.weight_mask = ffn[None, :]

    def bake(self, model: nn.Module) -> None:
        bake_masks(model)
