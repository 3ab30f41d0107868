"""The one optimiser step every training loop takes (pruning, filling, the teacher's fine-tuning)."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from prunetune.errors import TrialError

#: Gradient-norm clip of every step: distillation at high temperature spikes early on.
MAX_GRAD_NORM = 1.0


#: The trial keys that most often make a loss overflow, in the order to try them.
LOSS_KEYS = ("precision", "learning_rate", "layer_distill", "temperature")


def loss_suspects(settings, *, section: str = "trial", keys: tuple[str, ...] = LOSS_KEYS) -> str:
    """The keys most likely behind a non-finite loss, with their values (for its error)."""
    named = ", ".join(f"{section}.{key} = {getattr(settings, key)!r}" for key in keys if hasattr(settings, key))
    return (f"the keys most likely behind it: {named} (fp16 overflows where bf16 and fp32 do not; a lower "
            "learning rate, distillation weight or temperature keeps the loss finite)")


def optimiser_step(loss: torch.Tensor, model: nn.Module, optimizer: torch.optim.Optimizer,
                   scaler: torch.amp.GradScaler, *, describe: Callable[[], str], schedule=None) -> float:
    """Check the loss is finite, back-propagate (scaled for fp16), clip, step, and return the loss.

    ``describe`` names where the loss came from (the step, and the keys behind it with their
    values: :func:`loss_suspects`) for the error a non-finite loss raises; it is only called then.
    """
    if not torch.isfinite(loss):
        raise TrialError(f"loss is {loss.item()} at {describe()}")
    scaler.scale(loss).backward()
    scaler.unscale_(optimizer)
    torch.nn.utils.clip_grad_norm_(model.parameters(), MAX_GRAD_NORM)
    scaler.step(optimizer)
    scaler.update()
    if schedule is not None:
        schedule.step()
    optimizer.zero_grad(set_to_none=True)
    return float(loss.item())
