"""Regression: one text or a pair in, one score out (STS-B similarity, ratings, quality estimates).

The head is the family's sequence classifier with one output and ``problem_type
"regression"`` (transformers then trains it on the squared error). Distillation matches the
teacher's score: alpha x MSE(student, teacher) + (1 - alpha) x MSE(student, truth); a
temperature means nothing for a score and is not used.
"""

from __future__ import annotations

from typing import Any

from prunetune.errors import DataError
from prunetune.trainables.tasks._base import Encoded, TaskKind, expect_number, refused_test_time
from prunetune.trainables.tasks.classification import text_columns, tokenize_texts


class Regression(TaskKind):
    name = "regression"
    summary = "one text or a sentence pair -> one score (Pearson, Spearman, MSE)"
    head = "ForSequenceClassification"
    pipeline_task = "text-classification"
    refused_methods = refused_test_time("a score has no class")

    def columns(self, task: Any):
        return text_columns(task, label_check=expect_number)

    def has_pair(self, task: Any) -> bool:
        return task.text_pair_column is not None

    def targets(self, values, task, class_names):
        scores = [float(v) for v in values["label_column"]]
        if len(set(scores)) < 2:
            raise DataError(f"task.label_column = {task.label_column!r} of {task.dataset!r}: every score is "
                            f"{scores[0] if scores else 'missing'}; regression needs scores that vary")
        return scores, ()

    def model_kwargs(self, label_names) -> dict[str, Any]:
        return {"num_labels": 1, "problem_type": "regression", "id2label": {0: "score"}, "label2id": {"score": 0}}

    def encode(self, tokenizer, split, *, max_length: int, task: Any) -> Encoded:
        import torch

        return Encoded(inputs=tokenize_texts(tokenizer, split, max_length),
                       targets=torch.tensor(split.labels, dtype=torch.float32))

    def head_output(self, outputs):
        return outputs.logits[..., 0]

    def distillation_loss(self, student, teacher, targets, *, temperature, alpha):
        import torch.nn.functional as F

        task = F.mse_loss(student.float(), targets.float())
        if alpha == 0.0:
            return task
        return alpha * F.mse_loss(student.float(), teacher.float()) + (1.0 - alpha) * task

    def pseudo_targets(self, teacher, targets):
        return teacher.float()

    def score(self, outputs, encoded, split, label_names, task) -> dict[str, float]:
        from prunetune.trainables.tasks._scores import regression_scores

        return regression_scores(outputs.float().tolist(), list(split.labels))

    def example_scores(self, outputs, encoded, split, label_names, task):
        from prunetune.intervals import ExampleScores

        return ExampleScores.of_pairs(outputs.float().reshape(-1).tolist(), list(split.labels))

    def pipeline_kwargs(self) -> dict[str, Any]:
        return {"function_to_apply": "none"}  # the raw score, not a sigmoid of it
