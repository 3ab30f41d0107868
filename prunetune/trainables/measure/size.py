"""Size: parameters of a model, and the sparsity of its prunable encoder weights."""

from __future__ import annotations

from torch import nn

from prunetune.trainables.families import family_of
from prunetune.trainables.families._modeling import layer_views


def count_params(model: nn.Module) -> int:
    """All parameters, including the packed weights of dynamically quantised Linears
    (torch.ao keeps those outside ``parameters()``)."""
    from torch.ao.nn.quantized import (
        Linear as QuantizedLinear,  # dynamic Linear derives from it
    )

    total = sum(p.numel() for p in model.parameters())
    for module in model.modules():
        if isinstance(module, QuantizedLinear):
            bias = module.bias()
            total += module.weight().numel() + (bias.numel() if bias is not None else 0)
    return total




def prunable_linears(model: nn.Module) -> list[nn.Module]:
    """Every linear map that pruning may touch: Q, K, V, attention output, FFN in and out, of every layer."""
    return [linear for view in layer_views(model, family_of(model), split=False) for linear in view.linears().values()]


def count_prunable_weights(model: nn.Module) -> int:
    return sum(_weight_of(linear).numel() for linear in prunable_linears(model))


def weight_sparsity(model: nn.Module, *, dense_total: int | None = None) -> float:
    """Fraction of the prunable weights that are zero, or removed relative to ``dense_total``."""
    import torch

    nonzero = sum(int(torch.count_nonzero(_weight_of(linear)).item()) for linear in prunable_linears(model))
    total = dense_total if dense_total is not None else count_prunable_weights(model)
    return 1.0 - nonzero / total


def _weight_of(linear: nn.Module):
    weight = linear.weight
    return weight() if callable(weight) else weight  # dynamic-quantised linears expose weight()
