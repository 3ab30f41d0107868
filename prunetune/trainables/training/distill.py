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


# --------------------------------------------------------------------------- layer distillation


def layer_mapping(student_layers: int, teacher_layers: int,
                  removed: frozenset[int] = frozenset()) -> list[tuple[int, int]]:
    """(student layer, teacher layer) pairs: the k-th of the S student layers left learns from
    teacher layer ceil((k + 1) * T / S) - 1, spread uniformly with the last on the last
    (TinyBERT's mapping; the identity when the depths match, as they do for a pruned copy of
    the teacher). ``removed`` layers learn from none: a layer pruned whole cannot become a
    teacher layer, and the layers left take over its depth, as in CoFi."""
    kept = [i for i in range(student_layers) if i not in removed]
    if not kept or teacher_layers < 1:
        raise ValueError(f"layer mapping needs layers on both sides, got {len(kept)} and {teacher_layers}")
    return [(layer, -(-(k + 1) * teacher_layers // len(kept)) - 1) for k, layer in enumerate(kept)]


def hidden_state_loss(student_hidden: tuple[torch.Tensor, ...], teacher_hidden: tuple[torch.Tensor, ...],
                      attention_mask: torch.Tensor, mapping: list[tuple[int, int]]) -> torch.Tensor:
    """Mean over the mapped layers of the squared error between hidden states on real tokens,
    relative to the teacher's mean square there (so that the loss's weight means the same for
    every family and size).

    ``*_hidden`` are the models' ``hidden_states`` (embeddings first, then one per layer).
    """
    tokens = attention_mask.bool()
    losses = []
    for student_layer, teacher_layer in mapping:
        student = student_hidden[student_layer + 1][tokens].float()
        teacher = teacher_hidden[teacher_layer + 1][tokens].float()
        losses.append((student - teacher).pow(2).mean() / teacher.pow(2).mean().clamp_min(1e-12))
    return torch.stack(losses).mean()
