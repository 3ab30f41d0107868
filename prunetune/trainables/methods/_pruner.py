"""What a trial drives: a pruner's lifecycle, and the context a method builds its pruner from."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from prunetune.trainables.families import FamilySpec


@dataclass
class PruningContext:
    """Everything a method may need to build its pruner and its training set.

    ``settings`` is the trial's configuration (``TrialConfig``); ``texts`` / ``labels`` are
    the training split (a method that must not read labels ignores them), ``pairs`` its second
    texts (sentence pairs) or None; ``train_split`` is that split as the task ``kind`` reads it,
    with ``task`` its configuration; ``teacher_logits`` are the teacher's cached outputs on the
    encoded split (the kind's head outputs); ``measure_ms`` times a model with the
    trial's latency settings (median milliseconds); ``cache_dir`` holds what is measured
    once per teacher (latency cost tables).
    """

    settings: Any
    student: nn.Module
    family: FamilySpec
    tokenizer: Any
    texts: Sequence[str]
    labels: Sequence[int]
    teacher_logits: torch.Tensor
    max_length: int
    device: torch.device
    measure_ms: Callable[[nn.Module], float]
    cache_dir: Path
    kind: Any
    train_split: Any
    task: Any
    pairs: Sequence[str] | None
    #: Measures latency tables on the deploy nodes (``search.measure_on``); None: here.
    measurer: Any = None


class Pruner(nn.Module):
    """The lifecycle of a method inside a trial, driven step by step by the trial.

    Its buffers and parameters (mask scores, group weights, fixed masks, progress) are its
    checkpoint state: ``state_dict`` / ``load_state_dict``, saved as safetensors.
    """

    #: The sparsity the pruner has reached (or is scheduled at), reported during training.
    current_sparsity: float = 0.0
    #: Learning rate of ``mask_parameters`` (their own optimiser group, without weight decay).
    mask_learning_rate: float = 1e-2

    def mask_parameters(self) -> list[nn.Parameter]:
        """Learned pruning parameters (mask scores): their own optimiser group, larger learning rate."""
        return []

    def before_step(self, step: int, student: nn.Module) -> nn.Module:
        """Masks for this step; returns the student to train (a new, smaller one if structure was removed)."""
        return student

    def penalty(self, step: int) -> torch.Tensor | None:
        """A regulariser added to the loss at ``step``, or None."""
        return None

    def finish(self, student: nn.Module) -> nn.Module:
        """The student at the final sparsity, masks written into its weights, ready for compaction."""
        return student

    def removed_layers(self) -> frozenset[int]:
        """The layers whose every head and FFN neuron is masked at this step (layer distillation skips them)."""
        return frozenset()

    def metrics(self) -> dict[str, float]:
        """Extra metrics of the method (declared in its ``Method.metrics``), for the final report."""
        return {}
