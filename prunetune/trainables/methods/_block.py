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

import torch
from torch import nn

from prunetune.trainables.families import FamilySpec
from prunetune.trainables.families._modeling import LayerView
from prunetune.trainables.methods._masks import (
    ATTENTION_ROLES,
    bake_masks,
    give_back_blocks,
    install_attention_masks,
    install_ffn_mask,
    keep_count,
    kill_dead_heads,
    top_k_mask,
    with_straight_through,
    wrapped_views,
)
from prunetune.trainables.methods._pruner import Pruner


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


class BlockPruner(Pruner):
    """Top-k block masks from a scorer, following a sparsity schedule."""

    def __init__(self, model: nn.Module, spec: FamilySpec, *, scorer: Callable[[list[LayerView]], nn.Module],
                 block_size: int, sparsity_at: Callable[[int], float], final_sparsity: float,
                 min_head_density: float = 0.0, mask_learning_rate: float = 1e-2):
        super().__init__()
        self.mask_learning_rate = mask_learning_rate
        self.spec, self.block_size, self.min_head_density = spec, block_size, min_head_density
        self.sparsity_at, self.final_sparsity = sparsity_at, final_sparsity
        self.views = wrapped_views(model, spec)
        self.scorer = scorer(self.views)
        self.current_sparsity = 0.0

    def mask_parameters(self) -> list[nn.Parameter]:
        return self.scorer.learned()

    def before_step(self, step: int, student: nn.Module) -> nn.Module:
        self.update_masks(self.sparsity_at(step))
        return student

    def finish(self, student: nn.Module) -> nn.Module:
        self.update_masks(self.final_sparsity)
        bake_masks(student, self.spec)
        return student

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
        alive_rows = kill_dead_heads(hard, head_size=view.head_size, block_rows=self.block_size,
                                     min_head_density=self.min_head_density)
        unplaced_blocks = give_back_blocks(hard, {r: s.detach() for r, s in scores.items()}, alive_rows, target_kept)
        masks = {role: with_straight_through(hard[role], scores[role]) for role in ATTENTION_ROLES}
        install_attention_masks(view, masks, rows=self.block_size, cols=self.block_size)
        return unplaced_blocks * self.block_size ** 2
