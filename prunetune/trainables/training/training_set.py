"""What a student distils from: encoded texts, the teacher's cached logits, and task labels."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from prunetune.trainables.training.batches import encode


@dataclass(frozen=True)
class DistillationSet:
    """Encoded texts with the teacher's cached logits on them and the labels of the task term
    of the loss: the ground truth, or the teacher's argmax where training labels are not used."""

    inputs: dict[str, torch.Tensor]
    teacher_logits: torch.Tensor
    labels: torch.Tensor

    def __len__(self) -> int:
        return len(self.labels)


def labelled_set(tokenizer, texts, labels, teacher_logits: torch.Tensor, *, max_length: int) -> DistillationSet:
    """The whole training split with its ground-truth labels."""
    return DistillationSet(inputs=encode(tokenizer, texts, max_length), teacher_logits=teacher_logits,
                           labels=torch.tensor(labels))


def pseudo_labelled_set(tokenizer, texts, teacher_logits: torch.Tensor, *, max_length: int) -> DistillationSet:
    """Texts labelled by the teacher: its cached logits, and their argmax as the task labels."""
    return DistillationSet(inputs=encode(tokenizer, texts, max_length), teacher_logits=teacher_logits.float(),
                           labels=teacher_logits.argmax(dim=-1))
