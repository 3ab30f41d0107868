"""Tokenised tensors and a deterministic batch order that a resumed run can pick up mid-epoch."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch


def encode(tokenizer, texts: Sequence[str], max_length: int, pairs: Sequence[str] | None = None) -> dict[str, torch.Tensor]:
    """Tokenise once (texts, or sentence pairs), padded to ``max_length`` so that every batch has the same shape."""
    second = (list(pairs),) if pairs is not None else ()
    return dict(
        tokenizer(list(texts), *second, truncation=True, max_length=max_length, padding="max_length",
                  return_tensors="pt")
    )


def take(encodings: dict[str, torch.Tensor], indices: torch.Tensor, device: torch.device) -> dict[str, torch.Tensor]:
    return {name: tensor[indices].to(device, non_blocking=True) for name, tensor in encodings.items()}


@dataclass(frozen=True)
class BatchPlan:
    """Batch ``step`` is a pure function of (seed, step): resuming needs no sampler state."""

    num_examples: int
    batch_size: int
    seed: int

    @property
    def steps_per_epoch(self) -> int:
        return max(1, self.num_examples // self.batch_size)

    def indices(self, step: int) -> torch.Tensor:
        epoch, position = divmod(step, self.steps_per_epoch)
        order = torch.randperm(self.num_examples, generator=torch.Generator().manual_seed(self.seed * 100_003 + epoch))
        start = position * self.batch_size
        return order[start:start + min(self.batch_size, self.num_examples)]
