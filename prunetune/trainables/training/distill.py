"""Knowledge distillation loss (Hinton et al.), as used by every published run we follow."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def kd_divergence(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """KL(softmax(z_t / T) || softmax(z_s / T)) * T^2, averaged over the batch.

    The T^2 factor keeps the gradient scale independent of T.
    """
    student_log_probs = F.log_softmax(student_logits.float() / temperature, dim=-1)
    teacher_log_probs = F.log_softmax(teacher_logits.float() / temperature, dim=-1)
    kl = F.kl_div(student_log_probs, teacher_log_probs, log_target=True, reduction="batchmean")
    return kl * temperature**2


def distillation_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    labels: torch.Tensor,
    *,
    temperature: float,
    alpha: float,
) -> torch.Tensor:
    """alpha * distillation + (1 - alpha) * cross-entropy on the labels."""
    task = F.cross_entropy(student_logits.float(), labels)
    if alpha == 0.0:
        return task
    return alpha * kd_divergence(student_logits, teacher_logits, temperature) + (1.0 - alpha) * task
