"""Extractive question answering (SQuAD format): a question and a context in, an answer span out.

A context longer than ``task.max_length`` (with its question) is split into overlapping
windows, ``task.doc_stride`` tokens apart in overlap, as transformers' ``question-answering``
pipeline does; each window is a feature. A window's target is the answer's first and last
token, or the first token (the "no answer here" position) when the answer is not inside it.
Scores take the best span over all windows of an example (``task.max_answer_length`` tokens
at most) and compare its text with the gold answers by SQuAD's exact match and F1.
Distillation follows nn_pruning's SQuAD recipe: KL with temperature on the start and on the
end distributions, averaged.
"""

from __future__ import annotations

from typing import Any

from prunetune.errors import DataError
from prunetune.trainables.tasks._base import (
    Columns,
    Encoded,
    TaskKind,
    as_list,
    expect_answers,
    expect_text,
    refused_test_time,
)


class QuestionAnswering(TaskKind):
    name = "question_answering"
    summary = "question + context -> an answer span (SQuAD F1 and exact match)"
    head = "ForQuestionAnswering"
    pipeline_task = "question-answering"
    refused_methods = refused_test_time("an answer is a span")

    def columns(self, task: Any) -> Columns:
        return Columns(
            names={"question_column": task.question_column, "context_column": task.context_column,
                   "answers_column": task.answers_column},
            checks={"question_column": expect_text, "context_column": expect_text, "answers_column": expect_answers})

    def has_pair(self, task: Any) -> bool:
        return True

    def split_parts(self, values, task):
        return values["question_column"], values["context_column"]

    def targets(self, values, task, class_names):
        answers = []
        for row, (context, value) in enumerate(zip(values["context_column"], values["answers_column"])):
            texts, starts = tuple(as_list(value["text"])), tuple(int(s) for s in as_list(value["answer_start"]))
            for text, start in zip(texts, starts):
                if context[start:start + len(text)] != text:
                    raise DataError(f"task.answers_column = {task.answers_column!r}: row {row}'s answer {text!r:.60} "
                                    f"is not at character {start} of its context (found "
                                    f"{context[start:start + len(text)]!r:.60})")
            answers.append((texts, starts))
        return answers, ()

    def model_kwargs(self, label_names) -> dict[str, Any]:
        return {"num_labels": 2}  # a start and an end logit per token, whatever the base config says

    def encode(self, tokenizer, split, *, max_length: int, task: Any) -> Encoded:
        import torch

        encoding = tokenizer(list(split.texts), list(split.pairs), truncation="only_second", max_length=max_length,
                             stride=task.doc_stride, return_overflowing_tokens=True, return_offsets_mapping=True,
                             padding="max_length")
        examples = list(encoding.pop("overflow_to_sample_mapping"))
        token_offsets = encoding.pop("offset_mapping")
        offsets = [[tuple(span) if sequence == 1 else None for span, sequence in zip(spans, encoding.sequence_ids(f))]
                   for f, spans in enumerate(token_offsets)]
        targets = [_answer_tokens(offsets[f], split.labels[example]) for f, example in enumerate(examples)]
        inputs = {name: torch.tensor(values) for name, values in encoding.items()}
        return Encoded(inputs=inputs, targets=torch.tensor(targets), feature_examples=examples, offsets=offsets)

    def head_output(self, outputs):
        import torch

        return torch.stack([outputs.start_logits, outputs.end_logits], dim=-1)

    def loss_kwargs(self, targets):
        return {"start_positions": targets[:, 0], "end_positions": targets[:, 1]}

    def distillation_loss(self, student, teacher, targets, *, temperature, alpha):
        import torch.nn.functional as F

        from prunetune.trainables.training.distill import kd_divergence

        ends = range(2)  # 0: start, 1: end
        task = sum(F.cross_entropy(student[..., e].float(), targets[:, e]) for e in ends) / 2
        if alpha == 0.0:
            return task
        kd = sum(kd_divergence(student[..., e], teacher[..., e], temperature) for e in ends) / 2
        return alpha * kd + (1.0 - alpha) * task

    def pseudo_targets(self, teacher, targets):
        return teacher.argmax(dim=1)

    def score(self, outputs, encoded, split, label_names, task) -> dict[str, float]:
        return self.evaluate_outputs(outputs, encoded, split, label_names, task)[0]

    def example_scores(self, outputs, encoded, split, label_names, task):
        return self.evaluate_outputs(outputs, encoded, split, label_names, task)[1]

    def evaluate_outputs(self, outputs, encoded, split, label_names, task):
        from prunetune.intervals import ExampleScores
        from prunetune.trainables.tasks._scores import best_answers, span_f1, squad_scores

        # Decoding spans searches every window of every example: done once for both.
        logits = outputs.float().numpy()
        predictions = best_answers(logits[..., 0], logits[..., 1], encoded.feature_examples, encoded.offsets,
                                   list(split.pairs), max_answer_length=task.max_answer_length)
        golds = [list(texts) for texts, _ in split.labels]
        return squad_scores(predictions, golds), ExampleScores.of_mean(
            [span_f1(p, g) for p, g in zip(predictions, golds)])


def _answer_tokens(offsets: list[tuple[int, int] | None], answers) -> tuple[int, int]:
    """(first, last) token of the first answer when the window holds all of it, else (0, 0)."""
    texts, starts = answers
    begin, end = starts[0], starts[0] + len(texts[0])
    context = [i for i, span in enumerate(offsets) if span is not None]
    if not context or offsets[context[0]][0] > begin or offsets[context[-1]][1] < end:
        return 0, 0
    first = next(i for i in context if offsets[i][1] > begin)
    last = next(i for i in reversed(context) if offsets[i][0] < end)
    return first, last
