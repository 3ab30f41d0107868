"""Scoring for the non-classification task kinds: regression, entities, extractive QA.

Pure functions over plain predictions and targets (no model, no torch), so each task kind's
evaluation can be tested by hand and every score lands on the same footing: a fraction in
[0, 1] (mse aside) returned as a plain Python float that a trial can report and an
objective can rank.
"""

from __future__ import annotations

import math
import re
import string
from collections import Counter
from collections.abc import Sequence

import numpy as np
from scipy import stats

from prunetune import metrics as M

# --------------------------------------------------------------------------- regression


def regression_scores(predictions: Sequence[float], targets: Sequence[float]) -> dict[str, float]:
    """Pearson and Spearman correlation and mean squared error of predictions against targets.

    When either side is constant the correlation is undefined; it is reported as 0.0 (no
    correlation shown) rather than NaN, because an objective cannot rank NaN and a model that
    predicts one value for everything has shown no correlation with the targets.
    """
    pred, gold = _paired_values(predictions, targets)
    return {
        M.PEARSON: _correlation(stats.pearsonr, pred, gold),
        M.SPEARMAN: _correlation(stats.spearmanr, pred, gold),
        M.MSE: float(np.mean((pred - gold) ** 2)),
    }


def _paired_values(predictions: Sequence[float], targets: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """Both sides as 1-D float arrays of one non-zero length, the only shape the scores mean."""
    pred = np.asarray(predictions, dtype=float)
    gold = np.asarray(targets, dtype=float)
    if pred.ndim != 1 or gold.ndim != 1:
        raise ValueError(
            f"predictions and targets must be 1-D; got shapes {pred.shape} and {gold.shape}"
        )
    if len(pred) != len(gold):
        raise ValueError(
            f"predictions and targets must have the same length; got {len(pred)} and {len(gold)}"
        )
    if len(pred) == 0:
        raise ValueError("predictions and targets are empty; expected at least one pair")
    return pred, gold


def _correlation(measure, pred: np.ndarray, gold: np.ndarray) -> float:
    """The correlation ``measure`` gives, or 0.0 where it is undefined (a constant side)."""
    if np.ptp(pred) == 0 or np.ptp(gold) == 0:
        return 0.0
    value = float(measure(pred, gold)[0])
    return value if math.isfinite(value) else 0.0


# --------------------------------------------------------------------------- entities


def entity_scores(
    true_tags: Sequence[Sequence[str]], predicted_tags: Sequence[Sequence[str]]
) -> dict[str, float]:
    """Entity-level F1, precision and recall over IOB-tagged sentences (seqeval's definition).

    An entity counts only when both its span and its type are right, as in conlleval: a
    tagger that finds half a name has not found the name. Scores with nothing to count
    (no predicted or no gold entities) are 0.0.
    """
    from seqeval.metrics import f1_score, precision_score, recall_score

    gold, pred = _paired_sentences(true_tags, predicted_tags)
    return {
        M.F1: float(f1_score(gold, pred, zero_division=0)),
        M.PRECISION: float(precision_score(gold, pred, zero_division=0)),
        M.RECALL: float(recall_score(gold, pred, zero_division=0)),
    }


def sentence_entity_counts(
    true_tags: Sequence[Sequence[str]], predicted_tags: Sequence[Sequence[str]]
) -> list[tuple[int, int, int]]:
    """(entities right, entities predicted, gold entities) of each sentence, as seqeval counts them:
    their totals give :func:`entity_scores`' F1, and a bootstrap over sentences resamples them."""
    from seqeval.metrics.sequence_labeling import get_entities

    gold, pred = _paired_sentences(true_tags, predicted_tags)
    counts = []
    for gold_sentence, pred_sentence in zip(gold, pred):
        gold_entities, pred_entities = set(get_entities(gold_sentence)), set(get_entities(pred_sentence))
        counts.append((len(gold_entities & pred_entities), len(pred_entities), len(gold_entities)))
    return counts


def token_accuracy(true_tags: Sequence[Sequence[str]], predicted_tags: Sequence[Sequence[str]]) -> float:
    """Fraction of words whose predicted tag is the gold tag, across all sentences.

    A looser view than entity F1: it credits the many O tags and partial spans, which shows
    whether a tagger is close even when its entities are not yet exact.
    """
    gold, pred = _paired_sentences(true_tags, predicted_tags)
    words = sum(len(sentence) for sentence in gold)
    if words == 0:
        raise ValueError("the sentences hold no words; expected at least one tagged word")
    right = sum(g == p for gold_sentence, pred_sentence in zip(gold, pred)
                for g, p in zip(gold_sentence, pred_sentence))
    return right / words


def _paired_sentences(
    true_tags: Sequence[Sequence[str]], predicted_tags: Sequence[Sequence[str]]
) -> tuple[list[list[str]], list[list[str]]]:
    """Both tag sequences as lists of lists, checked to align sentence by sentence and word by word."""
    gold = [list(sentence) for sentence in true_tags]
    pred = [list(sentence) for sentence in predicted_tags]
    if len(gold) != len(pred):
        raise ValueError(
            f"true_tags and predicted_tags must hold the same number of sentences; "
            f"got {len(gold)} and {len(pred)}"
        )
    for index, (gold_sentence, pred_sentence) in enumerate(zip(gold, pred)):
        if len(gold_sentence) != len(pred_sentence):
            raise ValueError(
                f"sentence {index} has {len(gold_sentence)} true tags but "
                f"{len(pred_sentence)} predicted tags; expected one tag per word on both sides"
            )
    return gold, pred


# --------------------------------------------------------------------------- SQuAD v1.1

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCTUATION = frozenset(string.punctuation)


def normalize_answer(text: str) -> str:
    """Lower case, drop punctuation and the articles a/an/the, collapse whitespace.

    The official SQuAD v1.1 normalisation, so that answers differing only in casing,
    punctuation or a leading "the" match, and scores compare with published ones.
    """
    text = text.lower()
    text = "".join(ch for ch in text if ch not in _PUNCTUATION)
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


def exact_match(prediction: str, gold_answers: Sequence[str]) -> float:
    """1.0 when the normalised prediction equals any normalised gold answer, else 0.0."""
    _require_golds(gold_answers)
    predicted = normalize_answer(prediction)
    return max(float(predicted == normalize_answer(gold)) for gold in gold_answers)


def span_f1(prediction: str, gold_answers: Sequence[str]) -> float:
    """Token-overlap F1 of the normalised prediction against its best-matching gold answer.

    As in the official v1.1 script, a pair with no token in common scores 0.0, which
    includes a prediction and a gold answer that both normalise to nothing.
    """
    _require_golds(gold_answers)
    predicted = normalize_answer(prediction).split()
    return max(_token_f1(predicted, normalize_answer(gold).split()) for gold in gold_answers)


def squad_scores(predictions: Sequence[str], answers: Sequence[Sequence[str]]) -> dict[str, float]:
    """Mean exact match and mean span F1 over examples, each scored against all its golds."""
    if len(predictions) != len(answers):
        raise ValueError(
            f"predictions and answers must have the same length; got {len(predictions)} and {len(answers)}"
        )
    if len(predictions) == 0:
        raise ValueError("predictions and answers are empty; expected at least one example")
    for index, golds in enumerate(answers):
        if len(golds) == 0:
            raise ValueError(
                f"example {index} has no gold answers; SQuAD v1 expects at least one per question"
            )
    count = len(predictions)
    return {
        M.EXACT_MATCH: sum(exact_match(p, g) for p, g in zip(predictions, answers)) / count,
        M.F1: sum(span_f1(p, g) for p, g in zip(predictions, answers)) / count,
    }


def _token_f1(predicted: list[str], gold: list[str]) -> float:
    """Harmonic mean of token precision and recall, counting repeated tokens with multiplicity."""
    same = sum((Counter(predicted) & Counter(gold)).values())
    if same == 0:
        return 0.0
    precision = same / len(predicted)
    recall = same / len(gold)
    return 2 * precision * recall / (precision + recall)


def _require_golds(gold_answers: Sequence[str]) -> None:
    """A score is the best over the gold answers, so there must be one to take it over."""
    if len(gold_answers) == 0:
        raise ValueError("gold_answers is empty; expected at least one gold answer")


# --------------------------------------------------------------------------- QA spans

Offset = tuple[int, int] | None


def best_answers(
    start_logits: np.ndarray,
    end_logits: np.ndarray,
    feature_examples: Sequence[int],
    offsets: Sequence[Sequence[Offset]],
    contexts: Sequence[str],
    *,
    max_answer_length: int,
    n_best: int = 20,
) -> list[str]:
    """The highest-scoring context span of each example, searched across all its windows.

    A long context is split into overlapping windows (features), so the answer may be in
    any of them; each example's answer is the best span over all of its features. Only the
    ``n_best`` highest start and end positions of a feature are paired, which keeps the
    search small without losing the spans that could win. A pair is kept when both ends are
    context tokens (offset not None), the end is not before the start and the span is at
    most ``max_answer_length`` tokens; its score is start logit plus end logit. An example
    with no valid pair answers "".
    """
    starts, ends = _check_windows(start_logits, end_logits, feature_examples, offsets, contexts)
    if max_answer_length < 1:
        raise ValueError(f"max_answer_length must be at least 1; got {max_answer_length}")
    if n_best < 1:
        raise ValueError(f"n_best must be at least 1; got {n_best}")
    best: list[tuple[float, str] | None] = [None] * len(contexts)
    for feature, example in enumerate(feature_examples):
        found = _best_span(starts[feature], ends[feature], offsets[feature], max_answer_length, n_best)
        if found is None:
            continue
        score, (char_start, char_end) = found
        if best[example] is None or score > best[example][0]:
            best[example] = (score, contexts[example][char_start:char_end])
    return ["" if entry is None else entry[1] for entry in best]


def _best_span(
    starts: np.ndarray,
    ends: np.ndarray,
    offsets: Sequence[Offset],
    max_answer_length: int,
    n_best: int,
) -> tuple[float, tuple[int, int]] | None:
    """The best valid (score, (char_start, char_end)) of one feature, or None when it has none."""
    best: tuple[float, tuple[int, int]] | None = None
    for s in _top_positions(starts, n_best):
        for e in _top_positions(ends, n_best):
            if offsets[s] is None or offsets[e] is None:
                continue
            if e < s or e - s + 1 > max_answer_length:
                continue
            score = float(starts[s] + ends[e])
            if best is None or score > best[0]:
                best = (score, (offsets[s][0], offsets[e][1]))
    return best


def _top_positions(logits: np.ndarray, n_best: int) -> list[int]:
    """Indices of the ``n_best`` highest logits, highest first (earlier index on ties)."""
    return [int(i) for i in np.argsort(-logits, kind="stable")[:n_best]]


def _check_windows(
    start_logits: np.ndarray,
    end_logits: np.ndarray,
    feature_examples: Sequence[int],
    offsets: Sequence[Sequence[Offset]],
    contexts: Sequence[str],
) -> tuple[np.ndarray, np.ndarray]:
    """The logits as float arrays, checked to agree with the features' examples and offsets."""
    starts = np.asarray(start_logits, dtype=float)
    ends = np.asarray(end_logits, dtype=float)
    if starts.ndim != 2 or starts.shape != ends.shape:
        raise ValueError(
            f"start_logits and end_logits must both be (num_features, seq_len); "
            f"got shapes {starts.shape} and {ends.shape}"
        )
    num_features, seq_len = starts.shape
    if len(feature_examples) != num_features or len(offsets) != num_features:
        raise ValueError(
            f"expected one example index and one offset list per feature ({num_features}); "
            f"got {len(feature_examples)} example indices and {len(offsets)} offset lists"
        )
    for feature, (example, feature_offsets) in enumerate(zip(feature_examples, offsets)):
        if not 0 <= example < len(contexts):
            raise ValueError(
                f"feature {feature} belongs to example {example}; expected 0..{len(contexts) - 1}"
            )
        if len(feature_offsets) != seq_len:
            raise ValueError(
                f"feature {feature} has {len(feature_offsets)} offsets; expected one per token ({seq_len})"
            )
    return starts, ends
