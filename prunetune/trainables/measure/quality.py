"""Quality: a task's metrics of a model's predictions, in eval mode, without autograd.

:func:`evaluate_task` scores any task kind (its head outputs over the encoded split, then the
kind's own metrics); :func:`evaluate` is classification's accuracy and macro-F1 of argmax
predictions.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from prunetune.errors import DataError
from prunetune.trainables.measure.latency import eval_mode


@dataclass(frozen=True)
class Quality:
    accuracy: float
    f1_macro: float
    predictions: tuple[int, ...]


def predict_logits(
    model: nn.Module,
    encodings: dict[str, torch.Tensor],
    *,
    device: torch.device,
    batch_size: int = 64,
    autocast: contextlib.AbstractContextManager | None = None,
) -> torch.Tensor:
    """Logits of every example, float32 on the CPU, shape (N, num_labels)."""
    return predict_outputs(model, encodings, head_output=lambda outputs: outputs.logits, device=device,
                           batch_size=batch_size, autocast=autocast)


def predict_outputs(
    model: nn.Module,
    encodings: dict[str, torch.Tensor],
    *,
    head_output: Callable[[Any], torch.Tensor],
    device: torch.device,
    batch_size: int = 64,
    autocast: contextlib.AbstractContextManager | None = None,
) -> torch.Tensor:
    """``head_output`` of every feature (a task kind's), float32 on the CPU."""
    total = _num_examples(encodings)
    chunks = []
    with eval_mode(model), torch.inference_mode():
        for start in range(0, total, batch_size):
            batch = {key: value[start : start + batch_size].to(device) for key, value in encodings.items()}
            with autocast if autocast is not None else contextlib.nullcontext():
                outputs = head_output(model(**batch))
            chunks.append(outputs.float().cpu())
    return torch.cat(chunks) if chunks else torch.empty(0, 0)


def evaluate_task(model: nn.Module, encoded, split, *, kind, label_names: tuple[str, ...], task, device: torch.device,
                  autocast: contextlib.AbstractContextManager | None = None) -> dict[str, float]:
    """The metrics of task ``kind`` (a TaskKind) of ``model`` on ``split``, encoded as ``encoded``."""
    if len(encoded) == 0:
        raise DataError("evaluate: the split to evaluate on is empty")
    outputs = predict_outputs(model, encoded.inputs, head_output=kind.head_output, device=device, autocast=autocast)
    return kind.score(outputs, encoded, split, label_names, task)


def evaluate_task_examples(model: nn.Module, encoded, split, *, kind, label_names: tuple[str, ...], task,
                           device: torch.device, autocast: contextlib.AbstractContextManager | None = None):
    """(:func:`evaluate_task`'s metrics, the headline metric's per-example statistics) from one pass."""
    if len(encoded) == 0:
        raise DataError("evaluate: the split to evaluate on is empty")
    outputs = predict_outputs(model, encoded.inputs, head_output=kind.head_output, device=device, autocast=autocast)
    return kind.evaluate_outputs(outputs, encoded, split, label_names, task)


def evaluate(
    model: nn.Module,
    encodings: dict[str, torch.Tensor],
    labels: Sequence[int],
    *,
    device: torch.device,
    batch_size: int = 64,
    autocast: contextlib.AbstractContextManager | None = None,
) -> Quality:
    """Accuracy and macro-F1 of the model's argmax predictions against ``labels``."""
    total = _num_examples(encodings)
    if total == 0 or total != len(labels):
        raise DataError(f"evaluate: {total} encoded examples but {len(labels)} labels; expected the same, > 0")
    logits = predict_logits(model, encodings, device=device, batch_size=batch_size, autocast=autocast)
    predictions = logits.argmax(dim=-1).tolist()
    return Quality(
        accuracy=accuracy(predictions, labels),
        f1_macro=f1_macro(predictions, labels),
        predictions=tuple(predictions),
    )


def _num_examples(encodings: dict[str, torch.Tensor]) -> int:
    sizes = {key: len(value) for key, value in encodings.items()}
    if len(set(sizes.values())) != 1:
        raise DataError(f"encodings: every tensor needs the same number of examples, got {sizes}")
    return next(iter(sizes.values()))


def accuracy(predictions: Sequence[int], labels: Sequence[int]) -> float:
    return sum(int(p == y) for p, y in zip(predictions, labels)) / len(labels)


def f1_macro(predictions: Sequence[int], labels: Sequence[int]) -> float:
    from sklearn.metrics import f1_score

    # Averaged over the classes present in the truth or the predictions; a class
    # predicted but never true scores 0 instead of warning.
    return float(f1_score(list(labels), list(predictions), average="macro", zero_division=0))


