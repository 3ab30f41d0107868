"""Sequence classification: one text, or a sentence pair (``task.text_pair_column``), in; one class out.

Covers topic labels, sentiment, and the pair tasks of GLUE (MNLI, QQP, QNLI, MRPC, RTE),
cross-encoder rerankers and duplicate detectors: a pair is tokenised as the family's
tokenizer joins two segments (``[CLS] a [SEP] b [SEP]`` with token types for BERT).
"""

from __future__ import annotations

from typing import Any

from prunetune import metrics as M
from prunetune.errors import DataError
from prunetune.trainables.tasks._base import (
    Columns,
    Encoded,
    TaskKind,
    distinct_ids,
    expect_text,
)


class Classification(TaskKind):
    name = "classification"
    summary = "one text or a sentence pair -> one class (accuracy, macro-F1)"
    head = "ForSequenceClassification"
    pipeline_task = "text-classification"
    stratified = True

    def columns(self, task: Any) -> Columns:
        return text_columns(task, label_check=_expect_label)

    def has_pair(self, task: Any) -> bool:
        return task.text_pair_column is not None

    def targets(self, values, task, class_names):
        labels = values["label_column"]
        names = class_names.get("label_column")
        if names is not None:
            unknown = sorted({v for v in labels if not 0 <= v < len(names)})
            if unknown:
                raise DataError(f"task.label_column = {task.label_column!r}: values {unknown} are outside the "
                                f"dataset's ClassLabel ids 0..{len(names) - 1}")
            ids = [int(v) for v in labels]
        else:
            names, ids = distinct_ids(labels)
        _require_two_classes(ids, names, task)
        return ids, tuple(names)

    def encode(self, tokenizer, split, *, max_length: int, task: Any) -> Encoded:
        import torch

        return Encoded(inputs=tokenize_texts(tokenizer, split, max_length), targets=torch.tensor(split.labels))

    def distillation_loss(self, student, teacher, targets, *, temperature, alpha):
        from prunetune.trainables.training.distill import distillation_loss

        return distillation_loss(student, teacher, targets, temperature=temperature, alpha=alpha)

    def pseudo_targets(self, teacher, targets):
        return teacher.argmax(dim=-1)

    def score(self, outputs, encoded, split, label_names, task) -> dict[str, float]:
        from prunetune.trainables.measure.quality import accuracy, f1_macro

        predictions = outputs.argmax(dim=-1).tolist()
        return {M.ACCURACY: accuracy(predictions, split.labels), M.F1_MACRO: f1_macro(predictions, split.labels)}

    def example_scores(self, outputs, encoded, split, label_names, task):
        from prunetune.intervals import ExampleScores

        predictions = outputs.argmax(dim=-1).tolist()
        return ExampleScores.of_mean([p == y for p, y in zip(predictions, split.labels)])


# --------------------------------------------------------------------------- shared with regression


def text_columns(task: Any, *, label_check) -> Columns:
    names = {"text_column": task.text_column, "label_column": task.label_column}
    checks = {"text_column": expect_text, "label_column": label_check}
    if task.text_pair_column is not None:
        names["text_pair_column"] = task.text_pair_column
        checks["text_pair_column"] = expect_text
    return Columns(names=names, checks=checks)


def tokenize_texts(tokenizer, split, max_length: int) -> dict:
    """One text or a pair per row, truncated longest-first and padded to ``max_length``."""
    pairs = list(split.pairs) if split.pairs is not None else None
    return dict(tokenizer(list(split.texts), pairs, truncation=True, max_length=max_length, padding="max_length",
                          return_tensors="pt"))


def _expect_label(value: Any) -> str | None:
    import math

    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "has no label (a missing value)"
    return None


def _require_two_classes(ids: list[int], names, task: Any) -> None:
    present = sorted(set(ids))
    if len(present) < 2:
        found = ", ".join(repr(names[i]) for i in present) or "none"
        raise DataError(
            f"task.label_column = {task.label_column!r} of {task.dataset!r}: {len(present)} distinct "
            f"label(s) ({found}); classification needs at least 2"
        )
