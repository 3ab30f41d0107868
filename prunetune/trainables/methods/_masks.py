"""Masks shared by the mask-based methods: masked linear maps, top-k, dead heads, the cubic schedule.

Attention matrices (query, key, value, attention output) are masked in blocks; the FFN one
neuron at a time, the neuron's mask shared by its row of the input matrix and its column
of the output matrix. A head whose query, key or value slice is pruned away is dead: every
slice of it is masked, so that the masked model computes exactly what the compacted model
(with the head removed) computes.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from prunetune.trainables.families import ROLES, FamilySpec
from prunetune.trainables.families._modeling import LayerView, layer_views

#: The attention maps, masked in blocks; a block row of Q/K/V is a block column of the output.
ATTENTION_ROLES = ("query", "key", "value", "attention_output")
QKV = ("query", "key", "value")


def cubic_sparsity(step: int, *, max_steps: int, final: float, warmup_fraction: float, cooldown_fraction: float) -> float:
    """Dense during warm-up, a cubic ramp to ``final``, then ``final`` until the end."""
    start = warmup_fraction * max_steps
    end = (1.0 - cooldown_fraction) * max_steps
    if step < start:
        return 0.0
    if step >= end or end <= start:
        return final
    progress = (step - start) / (end - start)
    return final * (1.0 - (1.0 - progress) ** 3)


class MaskedLinear(nn.Linear):
    """nn.Linear that multiplies its weight (and bias) by masks set from outside each step.

    It shares the original layer's parameters, so state-dict keys are unchanged.
    """

    weight_mask: torch.Tensor | None = None
    bias_mask: torch.Tensor | None = None

    @classmethod
    def wrap(cls, linear: nn.Linear) -> "MaskedLinear":
        masked = cls.__new__(cls)
        nn.Module.__init__(masked)
        masked.in_features, masked.out_features = linear.in_features, linear.out_features
        masked.weight, masked.bias = linear.weight, linear.bias
        return masked

    def masked_weight(self) -> torch.Tensor:
        return self.weight if self.weight_mask is None else self.weight * self.weight_mask.to(self.weight.dtype)

    def masked_bias(self) -> torch.Tensor | None:
        if self.bias is None or self.bias_mask is None:
            return self.bias
        return self.bias * self.bias_mask.to(self.bias.dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.masked_weight(), self.masked_bias())

    def unwrap(self) -> nn.Linear:
        """A plain nn.Linear holding the masked weights."""
        plain = nn.Linear(self.in_features, self.out_features, bias=self.bias is not None,
                          device=self.weight.device, dtype=self.weight.dtype)
        with torch.no_grad():
            plain.weight.copy_(self.masked_weight())
            if self.bias is not None:
                plain.bias.copy_(self.masked_bias())
        return plain


def wrapped_views(model: nn.Module, spec: FamilySpec) -> list[LayerView]:
    """The model's layer views, with every prunable map replaced by a MaskedLinear sharing its parameters."""
    views = layer_views(model, spec)
    for view in views:
        for role in ROLES:
            linear = view.linear(role)
            if not isinstance(linear, MaskedLinear):
                view.set_linear(role, MaskedLinear.wrap(linear))
    return views


@torch.no_grad()
def bake_masks(model: nn.Module, spec: FamilySpec) -> None:
    """Write the masks into the weights and turn every wrapped map back into nn.Linear."""
    for view in layer_views(model, spec):
        for role in ROLES:
            linear = view.linear(role)
            if isinstance(linear, MaskedLinear):
                view.set_linear(role, linear.unwrap())


def install_ffn_mask(view: LayerView, mask: torch.Tensor) -> None:
    """One mask per neuron, on its input row (and bias) and its output column."""
    view.linear("ffn_in").weight_mask = mask[:, None]
    view.linear("ffn_in").bias_mask = mask.detach()
    view.linear("ffn_out").weight_mask = mask[None, :]
    view.linear("ffn_out").bias_mask = None  # the FFN output bias feeds the residual stream: keep it


def install_attention_masks(view: LayerView, masks: dict[str, torch.Tensor], *, rows: int, cols: int) -> None:
    """Block masks (``rows`` along the head dimension x ``cols`` along the hidden one) on Q, K, V and output.

    Q, K and V rows that are fully masked lose their bias too (compaction removes them); the
    output projection's bias feeds the residual stream and stays.
    """
    for role in ATTENTION_ROLES:
        linear, mask = view.linear(role), masks[role]
        if role == "attention_output":  # its head dimension is its input
            linear.weight_mask = mask.repeat_interleave(cols, 0).repeat_interleave(rows, 1)
            linear.bias_mask = None
        else:
            linear.weight_mask = mask.repeat_interleave(rows, 0).repeat_interleave(cols, 1)
            linear.bias_mask = mask.detach().any(dim=1).float().repeat_interleave(rows)


def keep_count(total: int, sparsity: float) -> int:
    return total - int(round(total * sparsity))


def top_k_mask(scores: torch.Tensor, keep: int) -> torch.Tensor:
    """1.0 at the ``keep`` highest scores, 0.0 elsewhere."""
    flat = scores.reshape(-1)
    mask = torch.zeros_like(flat, dtype=torch.float32)
    if keep > 0:
        mask[torch.topk(flat.float(), keep, sorted=False).indices] = 1.0
    return mask.view_as(scores)


def with_straight_through(hard: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
    """The hard mask's values, with the identity gradient to the scores (when they learn)."""
    if not scores.requires_grad:
        return hard
    return hard + scores - scores.detach()


def head_density(block_mask: torch.Tensor, block_rows: int, head_size: int) -> torch.Tensor:
    """Fraction of each unit's slice (its ``head_size`` rows of a Q/K/V block mask) that the mask keeps."""
    row_density = block_mask.float().mean(dim=1).repeat_interleave(block_rows)
    return row_density.view(-1, head_size).mean(dim=1)


def unit_rows_of(view: LayerView) -> dict[str, int]:
    """Rows of each attention map per attention unit (columns, for the output): a head's, or a
    key/value head's with its query heads in grouped-query attention."""
    return {role: view.unit_rows(role) for role in ATTENTION_ROLES}


def block_rows_alive(units_alive: torch.Tensor, rows_per_unit: int, block_rows: int) -> torch.Tensor:
    """Per block row of a map (along the head dimension): whether all its rows are in live units."""
    return units_alive.repeat_interleave(rows_per_unit).view(-1, block_rows).all(dim=1)


def kill_dead_heads(hard: dict[str, torch.Tensor], *, unit_rows: dict[str, int], block_rows: int,
                    min_head_density: float = 0.0) -> dict[str, torch.Tensor]:
    """Mask every slice (Q, K, V rows, output columns) of attention units whose Q, K or V is
    fully pruned, or keeps less than ``min_head_density`` of its blocks.

    A head costs the same compute however few of its blocks survive: only removing it makes
    the model faster. ``hard`` holds the block masks of the attention roles; blocks span
    ``block_rows`` along the head dimension; ``unit_rows`` are each role's rows per unit (see
    :func:`unit_rows_of`). Returns, per role, a boolean per block row of Q/K/V (per block
    column of the output).
    """
    densities = [head_density(hard[role], block_rows, unit_rows[role]) for role in QKV]
    units_alive = torch.stack([(d > 0) & (d >= min_head_density) for d in densities]).all(dim=0)
    alive = {role: block_rows_alive(units_alive, unit_rows[role], block_rows) for role in ATTENTION_ROLES}
    # Compaction removes a dead unit's every slice, so mask them all: the masked model then
    # holds exactly the weights the compacted one keeps, and the freed blocks are counted.
    for role in QKV:
        hard[role] *= alive[role][:, None]
    hard["attention_output"] *= alive["attention_output"][None, :]
    return alive


def give_back_blocks(hard: dict[str, torch.Tensor], scores: dict[str, torch.Tensor],
                     alive_rows: dict[str, torch.Tensor], target_kept: int) -> int:
    """Re-admit the best pruned blocks of live heads until ``target_kept`` blocks are kept.

    ``alive_rows`` is :func:`kill_dead_heads`'s, per role. Returns how many blocks could not be
    re-admitted (live heads were already full).
    """
    deficit = target_kept - sum(int(h.sum().item()) for h in hard.values())
    if deficit <= 0:
        return 0
    candidates = []
    for role in ATTENTION_ROLES:
        alive = alive_rows[role][None, :] if role == "attention_output" else alive_rows[role][:, None]
        eligible = (hard[role] == 0) & alive.expand_as(hard[role])
        excluded = torch.full_like(scores[role], -math.inf, dtype=torch.float32)
        candidates.append(torch.where(eligible, scores[role].float(), excluded))
    flat = torch.cat([c.reshape(-1) for c in candidates])
    available = int(torch.isfinite(flat).sum().item())
    chosen = torch.topk(flat, min(deficit, available)).indices
    offsets = [0]
    for c in candidates:
        offsets.append(offsets[-1] + c.numel())
    for role, start, end in zip(ATTENTION_ROLES, offsets, offsets[1:]):
        local = chosen[(chosen >= start) & (chosen < end)] - start
        hard[role].view(-1)[local] = 1.0
    return deficit - len(chosen)
