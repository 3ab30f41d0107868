"""Block pruning of BERT encoders: movement ("hybrid") and magnitude, with a cubic schedule.

Attention matrices (query, key, value, output) are pruned in b x b blocks; the FFN is
pruned one neuron at a time, the neuron's mask shared by the row of the intermediate
matrix and the column of the output matrix (Lagunas et al. 2021, "hybrid").

Masks are top-k per matrix, so the kept fraction is exact at every step. Scores are
learned with a straight-through estimator for ``movement`` (the gradient reaching a block
score is the block's summed movement signal, dL/dW' * W) and are block L2 norms for
``magnitude``.

A head whose query, key or value slice is fully pruned is dead: its value rows and
output columns are masked too, so the masked model computes exactly what the compacted
model (with the head removed) computes. The blocks freed that way are given back to the
highest-scoring pruned blocks of live heads, so the final sparsity stays the target.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

ATTENTION_MATRICES = ("query", "key", "value", "output")


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


@dataclass
class _LayerModules:
    query: MaskedLinear
    key: MaskedLinear
    value: MaskedLinear
    output: MaskedLinear
    intermediate: MaskedLinear
    ffn_output: MaskedLinear
    head_size: int

    def attention(self, name: str) -> MaskedLinear:
        return getattr(self, name)


def bert_layers(model: nn.Module) -> list[nn.Module]:
    """The encoder layers of a BERT-style model (``model.bert.encoder.layer``)."""
    base = getattr(model, "bert", None) or getattr(model, "base_model", model)
    try:
        return list(base.encoder.layer)
    except AttributeError:
        raise TypeError(f"{type(model).__name__} is not a BERT-style encoder (no encoder.layer)") from None


def prunable_linears(model: nn.Module) -> list[nn.Linear]:
    """Every linear map that pruning may touch: Q, K, V, attention output, FFN in and out."""
    linears = []
    for layer in bert_layers(model):
        self_attention = layer.attention.self
        linears += [self_attention.query, self_attention.key, self_attention.value,
                    layer.attention.output.dense, layer.intermediate.dense, layer.output.dense]
    return linears


def count_prunable_weights(model: nn.Module) -> int:
    return sum(_weight_of(linear).numel() for linear in prunable_linears(model))


def weight_sparsity(model: nn.Module, *, dense_total: int | None = None) -> float:
    """Fraction of the prunable weights that are zero, or removed relative to ``dense_total``."""
    linears = prunable_linears(model)
    nonzero = sum(int(torch.count_nonzero(_weight_of(linear)).item()) for linear in linears)
    total = dense_total if dense_total is not None else count_prunable_weights(model)
    return 1.0 - nonzero / total


def _weight_of(linear: nn.Module) -> torch.Tensor:
    weight = linear.weight
    return weight() if callable(weight) else weight  # dynamic-quantised linears expose weight()


class BlockPruner(nn.Module):
    """Owns the mask scores of a BERT model and applies masks to it at each step."""

    def __init__(self, model: nn.Module, *, method: str, block_size: int, min_head_density: float = 0.0):
        super().__init__()
        if method not in ("movement", "magnitude"):
            raise ValueError(f"BlockPruner supports movement and magnitude, got {method!r}")
        self.method = method
        self.block_size = block_size
        self.layers = [wrap_layer(layer) for layer in bert_layers(model)]
        self.scores = nn.ParameterDict()
        if method == "movement":
            for index, layer in enumerate(self.layers):
                for name in ATTENTION_MATRICES:
                    rows, cols = self._block_grid(layer.attention(name))
                    self.scores[f"l{index}_{name}"] = nn.Parameter(torch.zeros(rows, cols, device=layer.query.weight.device))
                self.scores[f"l{index}_ffn"] = nn.Parameter(
                    torch.zeros(layer.intermediate.out_features, device=layer.query.weight.device)
                )
        self.current_sparsity = 0.0
        self.min_head_density = min_head_density

    # ------------------------------------------------------------------ setup

    def _block_grid(self, linear: nn.Linear) -> tuple[int, int]:
        b = self.block_size
        if linear.out_features % b or linear.in_features % b:
            raise ValueError(f"block size {b} does not tile a {linear.out_features}x{linear.in_features} matrix")
        return linear.out_features // b, linear.in_features // b

    # ------------------------------------------------------------------ scores

    def _attention_scores(self, index: int, name: str) -> torch.Tensor:
        if self.method == "movement":
            return self.scores[f"l{index}_{name}"]
        weight = self.layers[index].attention(name).weight.detach()
        b = self.block_size
        rows, cols = self._block_grid(self.layers[index].attention(name))
        return weight.reshape(rows, b, cols, b).pow(2).sum(dim=(1, 3)).sqrt()

    def _ffn_scores(self, index: int) -> torch.Tensor:
        if self.method == "movement":
            return self.scores[f"l{index}_ffn"]
        layer = self.layers[index]
        incoming = layer.intermediate.weight.detach().pow(2).sum(dim=1)
        outgoing = layer.ffn_output.weight.detach().pow(2).sum(dim=0)
        return (incoming + outgoing).sqrt()

    # ------------------------------------------------------------------ masks

    def update_masks(self, sparsity: float) -> None:
        """Compute every mask for the given sparsity and install it on the wrapped layers."""
        self.current_sparsity = sparsity
        for index, layer in enumerate(self.layers):
            unplaced_weights = self._install_attention_masks(index, layer, sparsity)
            self._install_ffn_mask(index, layer, sparsity, extra_weights=unplaced_weights)

    def _install_ffn_mask(self, index: int, layer: _LayerModules, sparsity: float, *, extra_weights: int = 0) -> None:
        """Top-k FFN neurons; ``extra_weights`` the attention could not keep go to more neurons."""
        scores = self._ffn_scores(index)
        weights_per_neuron = layer.intermediate.in_features + layer.ffn_output.out_features
        keep = min(scores.numel(), keep_count(scores.numel(), sparsity) + extra_weights // weights_per_neuron)
        mask = _with_straight_through(top_k_mask(scores.detach(), keep), scores)
        layer.intermediate.weight_mask = mask[:, None]
        layer.intermediate.bias_mask = mask.detach()
        layer.ffn_output.weight_mask = mask[None, :]
        layer.ffn_output.bias_mask = None  # the FFN output bias feeds the residual stream: keep it

    def _install_attention_masks(self, index: int, layer: _LayerModules, sparsity: float) -> int:
        """Install the block masks; return how many kept weights found no place in live heads."""
        scores = {name: self._attention_scores(index, name) for name in ATTENTION_MATRICES}
        hard = {name: top_k_mask(s.detach(), keep_count(s.numel(), sparsity)) for name, s in scores.items()}
        target_kept = sum(int(h.sum().item()) for h in hard.values())
        alive_rows = self._kill_dead_heads(hard, layer.head_size)
        unplaced_blocks = give_back_blocks(hard, {n: s.detach() for n, s in scores.items()}, alive_rows, target_kept)
        b = self.block_size
        for name in ATTENTION_MATRICES:
            block_mask = _with_straight_through(hard[name], scores[name])
            module = layer.attention(name)
            module.weight_mask = block_mask.repeat_interleave(b, 0).repeat_interleave(b, 1)
            # Q, K, V rows that are fully masked lose their bias too (they are removed by compaction);
            # the output projection's bias feeds the residual stream and stays.
            module.bias_mask = None if name == "output" else hard[name].any(dim=1).float().repeat_interleave(b)
        return unplaced_blocks * b * b

    def _kill_dead_heads(self, hard: dict[str, torch.Tensor], head_size: int) -> torch.Tensor:
        return kill_dead_heads(hard, head_size=head_size, block_rows=self.block_size,
                               min_head_density=self.min_head_density)

    # ------------------------------------------------------------------ results

    def mask_parameters(self) -> list[nn.Parameter]:
        return list(self.scores.values())

    def penalty(self, step: int) -> torch.Tensor | None:
        """Regulariser added to the task loss at ``step``: none, the top-k binarizer sets the sparsity itself."""
        return None

    def bake(self, model: nn.Module) -> None:
        bake_masks(model)


def wrap_layer(layer: nn.Module) -> _LayerModules:
    """Replace the layer's prunable linears by MaskedLinear (sharing their parameters)."""
    self_attention = layer.attention.self
    for owner, attribute in [(self_attention, "query"), (self_attention, "key"), (self_attention, "value"),
                             (layer.attention.output, "dense"), (layer.intermediate, "dense"), (layer.output, "dense")]:
        module = getattr(owner, attribute)
        if not isinstance(module, MaskedLinear):
            setattr(owner, attribute, MaskedLinear.wrap(module))
    return _LayerModules(
        query=self_attention.query, key=self_attention.key, value=self_attention.value,
        output=layer.attention.output.dense, intermediate=layer.intermediate.dense,
        ffn_output=layer.output.dense, head_size=self_attention.attention_head_size,
    )


def kill_dead_heads(hard: dict[str, torch.Tensor], *, head_size: int, block_rows: int,
                    min_head_density: float = 0.0) -> torch.Tensor:
    """Mask every slice (Q, K, V rows, output columns) of heads whose Q, K or V is fully
    pruned, or keeps less than ``min_head_density`` of its blocks.

    A head costs the same compute however few of its blocks survive: only removing it makes
    the model faster. ``min_head_density`` trades a sparse head's last blocks (given back to
    live heads, so the sparsity is unchanged) for speed.

    ``hard`` holds the block masks of query, key, value and output; blocks span ``block_rows``
    along the head dimension (rows of Q/K/V, columns of the output). Returns a boolean per
    block row of Q/K/V (equally per block column of the output).
    """
    b = block_rows  # extent of a block along the head dimension
    densities = [_head_density(hard[name], b, head_size) for name in ("query", "key", "value")]
    heads_alive = torch.stack([(d > 0) & (d >= min_head_density) for d in densities]).all(dim=0)
    element_alive = heads_alive.repeat_interleave(head_size)
    block_alive = element_alive.view(-1, b).all(dim=1)
    # Compaction removes a dead head's every slice, so mask them all: the masked model then
    # holds exactly the weights the compacted one keeps, and the freed blocks are counted.
    for name in ("query", "key", "value"):
        hard[name] *= block_alive[:, None]
    hard["output"] *= block_alive[None, :]
    return block_alive


@torch.no_grad()
def bake_masks(model: nn.Module) -> None:
    """Write the masks into the weights and turn every wrapped layer back into nn.Linear."""
    for layer in bert_layers(model):
        self_attention = layer.attention.self
        for owner, attribute in [(self_attention, "query"), (self_attention, "key"), (self_attention, "value"),
                                 (layer.attention.output, "dense"), (layer.intermediate, "dense"), (layer.output, "dense")]:
            module = getattr(owner, attribute)
            if isinstance(module, MaskedLinear):
                setattr(owner, attribute, module.unwrap())


def keep_count(total: int, sparsity: float) -> int:
    return total - int(round(total * sparsity))


def top_k_mask(scores: torch.Tensor, keep: int) -> torch.Tensor:
    """1.0 at the ``keep`` highest scores, 0.0 elsewhere (ties broken by position, stably)."""
    flat = scores.reshape(-1)
    mask = torch.zeros_like(flat, dtype=torch.float32)
    if keep > 0:
        mask[torch.topk(flat.float(), keep, sorted=False).indices] = 1.0
    return mask.view_as(scores)


def _with_straight_through(hard: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
    """The hard mask's values, with the identity gradient to the scores (when they learn)."""
    if not scores.requires_grad:
        return hard
    return hard + scores - scores.detach()


def _head_density(block_mask: torch.Tensor, block_size: int, head_size: int) -> torch.Tensor:
    """Fraction of each head's slice (its rows of a Q/K/V matrix) that the mask keeps."""
    row_density = block_mask.float().mean(dim=1).repeat_interleave(block_size)
    return row_density.view(-1, head_size).mean(dim=1)


def give_back_blocks(hard: dict[str, torch.Tensor], scores: dict[str, torch.Tensor],
                     alive_rows: torch.Tensor, target_kept: int) -> int:
    """Re-admit the best pruned blocks of live heads until ``target_kept`` blocks are kept.

    Returns how many blocks could not be re-admitted (live heads were already full).
    """
    deficit = target_kept - sum(int(h.sum().item()) for h in hard.values())
    if deficit <= 0:
        return 0
    candidates = []
    for name in ATTENTION_MATRICES:
        alive = alive_rows[None, :] if name == "output" else alive_rows[:, None]
        eligible = (hard[name] == 0) & alive.expand_as(hard[name])
        candidates.append(torch.where(eligible, scores[name].float(), torch.full_like(scores[name], -math.inf, dtype=torch.float32)))
    flat = torch.cat([c.reshape(-1) for c in candidates])
    available = int(torch.isfinite(flat).sum().item())
    chosen = torch.topk(flat, min(deficit, available)).indices
    offsets = [0]
    for c in candidates:
        offsets.append(offsets[-1] + c.numel())
    for name, start, end in zip(ATTENTION_MATRICES, offsets, offsets[1:]):
        local = chosen[(chosen >= start) & (chosen < end)] - start
        hard[name].view(-1)[local] = 1.0
    return deficit - len(chosen)
