"""Token classification: a sentence as words in, one tag per word out (NER, PII, chunking).

Words are tokenised with ``is_split_into_words``; the first sub-token of each word carries
the word's tag and every other token is ignored (-100), in training, distillation and
scoring alike. Scores are seqeval's: an entity counts only when its span and type are both
right. A word cut off by ``task.max_length`` is scored as tagged ``O``: that is what the
deployed model would give it.
"""

from __future__ import annotations

from typing import Any

from prunetune import metrics as M
from prunetune.errors import DataError
from prunetune.trainables.tasks._base import (
    IGNORED,
    Columns,
    Encoded,
    TaskKind,
    as_list,
    distinct_ids,
    expect_tags,
    expect_words,
    refused_test_time,
)

OUTSIDE = "O"


class TokenClassification(TaskKind):
    name = "token_classification"
    summary = "words -> one tag per word (entity F1, precision, recall; word accuracy)"
    head = "ForTokenClassification"
    pipeline_task = "token-classification"
    refused_methods = refused_test_time("a sentence has a tag per word")

    def columns(self, task: Any) -> Columns:
        return Columns(names={"tokens_column": task.tokens_column, "tags_column": task.tags_column},
                       checks={"tokens_column": expect_words, "tags_column": expect_tags})

    def split_parts(self, values, task):
        return [tuple(as_list(words)) for words in values["tokens_column"]], None

    def targets(self, values, task, class_names):
        words, tags = values["tokens_column"], [as_list(t) for t in values["tags_column"]]
        for row, (sentence, sentence_tags) in enumerate(zip(words, tags)):
            if len(as_list(sentence)) != len(sentence_tags):
                raise DataError(f"task.tags_column = {task.tags_column!r}: row {row} has {len(sentence_tags)} tags "
                                f"for {len(as_list(sentence))} words (task.tokens_column = {task.tokens_column!r}); "
                                "expected one tag per word")
        flat = [tag for sentence_tags in tags for tag in sentence_tags]
        names = class_names.get("tags_column")
        if names is not None:
            unknown = sorted({t for t in flat if not (isinstance(t, int) and 0 <= t < len(names))}, key=str)
            if unknown:
                raise DataError(f"task.tags_column = {task.tags_column!r}: tags {unknown[:10]} are outside the "
                                f"dataset's ClassLabel ids 0..{len(names) - 1}")
            return [tuple(int(t) for t in sentence_tags) for sentence_tags in tags], tuple(names)
        if not all(isinstance(t, str) for t in flat):
            raise DataError(f"task.tags_column = {task.tags_column!r}: integer tags need the dataset's ClassLabel "
                            "names (a Hugging Face dataset); in a file, write the tags as strings (B-PER, I-PER, O)")
        names, ids = distinct_ids(flat)
        per_sentence, start = [], 0
        for sentence_tags in tags:
            per_sentence.append(tuple(ids[start:start + len(sentence_tags)]))
            start += len(sentence_tags)
        return per_sentence, names

    def encode(self, tokenizer, split, *, max_length: int, task: Any) -> Encoded:
        import torch

        encoding = tokenizer([list(words) for words in split.texts], is_split_into_words=True, truncation=True,
                             max_length=max_length, padding="max_length", return_tensors="pt")
        word_ids = [encoding.word_ids(row) for row in range(len(split))]
        targets = torch.tensor([_aligned(ids, tags) for ids, tags in zip(word_ids, split.labels)])
        return Encoded(inputs=dict(encoding), targets=targets, word_ids=word_ids)

    def distillation_loss(self, student, teacher, targets, *, temperature, alpha):
        import torch.nn.functional as F

        from prunetune.trainables.training.distill import kd_divergence

        words = targets.ne(IGNORED)
        task = F.cross_entropy(student[words].float(), targets[words])
        if alpha == 0.0:
            return task
        return alpha * kd_divergence(student[words], teacher[words], temperature) + (1.0 - alpha) * task

    def pseudo_targets(self, teacher, targets):
        return teacher.argmax(dim=-1).masked_fill(targets.eq(IGNORED), IGNORED)

    def score(self, outputs, encoded, split, label_names, task) -> dict[str, float]:
        from prunetune.trainables.tasks._scores import entity_scores, token_accuracy

        truth, predicted = _sentence_tags(outputs, encoded, split, label_names)
        return {**entity_scores(truth, predicted), M.ACCURACY: token_accuracy(truth, predicted)}

    def example_scores(self, outputs, encoded, split, label_names, task):
        from prunetune.intervals import ExampleScores
        from prunetune.trainables.tasks._scores import sentence_entity_counts

        truth, predicted = _sentence_tags(outputs, encoded, split, label_names)
        return ExampleScores.of_counts(*zip(*sentence_entity_counts(truth, predicted)))

    def pipeline_kwargs(self) -> dict[str, Any]:
        return {"aggregation_strategy": "simple"}


def _sentence_tags(outputs, encoded, split, label_names) -> tuple[list[list[str]], list[list[str]]]:
    """(gold tags, predicted tags) of every sentence, one tag per word."""
    predicted_ids = outputs.argmax(dim=-1).tolist()
    truth = [[label_names[t] for t in tags] for tags in split.labels]
    predicted = [_word_tags(ids, word_ids, len(tags), label_names)
                 for ids, word_ids, tags in zip(predicted_ids, encoded.word_ids, split.labels)]
    return truth, predicted


def _aligned(word_ids: list[int | None], tags: tuple[int, ...]) -> list[int]:
    """The tag of each word on its first token; -100 on every other token."""
    aligned, previous = [], None
    for word in word_ids:
        aligned.append(tags[word] if word is not None and word != previous else IGNORED)
        previous = word
    return aligned


def _word_tags(token_predictions: list[int], word_ids: list[int | None], words: int,
               label_names: tuple[str, ...]) -> list[str]:
    """One predicted tag per word: its first token's; ``O`` for a word truncated away."""
    tags = [OUTSIDE] * words
    previous = None
    for prediction, word in zip(token_predictions, word_ids):
        if word is not None and word != previous:
            tags[word] = label_names[prediction]
        previous = word
    return tags
