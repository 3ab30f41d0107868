"""What a student distils from: encoded inputs, the teacher's cached outputs, and task targets."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from prunetune.trainables.training.batches import encode


@dataclass(frozen=True)
class DistillationSet:
    """Encoded inputs with the teacher's cached outputs on them (``teacher_logits``: a task kind's
    head outputs) and the targets of the task term of the loss (``labels``): the ground truth, or
    targets made from the teacher's outputs where training labels are not used."""

    inputs: dict[str, torch.Tensor]
    teacher_logits: torch.Tensor
    labels: torch.Tensor

    def __len__(self) -> int:
        return len(self.labels)


def pseudo_labelled_set(tokenizer, texts, teacher_logits: torch.Tensor, *, max_length: int,
                        pairs=None) -> DistillationSet:
    """Texts (or sentence pairs) labelled by the teacher: its cached logits, and their argmax as the task labels."""
    return DistillationSet(inputs=encode(tokenizer, texts, max_length, pairs), teacher_logits=teacher_logits.float(),
                           labels=teacher_logits.argmax(dim=-1))


def encoded_set(inputs: dict[str, torch.Tensor], targets: torch.Tensor, teacher_outputs: torch.Tensor) -> DistillationSet:
    """A task's encoded training features with their targets and the teacher's cached outputs."""
    if len(teacher_outputs) != len(targets):
        raise ValueError(f"{len(teacher_outputs)} cached teacher outputs for {len(targets)} features; expected one "
                         "per feature (the teacher cache belongs to another encoding)")
    return DistillationSet(inputs=inputs, teacher_logits=teacher_outputs, labels=targets)
