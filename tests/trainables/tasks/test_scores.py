"""Scores of the non-classification task kinds (prunetune.trainables.tasks._scores)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from prunetune.trainables.tasks._scores import (
    best_answers,
    entity_scores,
    exact_match,
    normalize_answer,
    regression_scores,
    span_f1,
    squad_scores,
    token_accuracy,
)

# --------------------------------------------------------------------------- regression


def test_perfect_correlation_scores_one():
    scores = regression_scores([1.0, 2.0, 3.0, 4.0], [2.0, 4.0, 6.0, 8.0])
    assert scores["pearson"] == pytest.approx(1.0)
    assert scores["spearman"] == pytest.approx(1.0)


def test_anti_correlation_scores_minus_one():
    scores = regression_scores([1.0, 2.0, 3.0, 4.0], [4.0, 3.0, 2.0, 1.0])
    assert scores["pearson"] == pytest.approx(-1.0)
    assert scores["spearman"] == pytest.approx(-1.0)


def test_pearson_matches_hand_computation():
    # x - mean = [-1, 0, 1], y - mean = [-4/3, -1/3, 5/3]:
    # r = 3 / sqrt(2 * 14/3) = sqrt(27/28)
    scores = regression_scores([1.0, 2.0, 3.0], [1.0, 2.0, 4.0])
    assert scores["pearson"] == pytest.approx(math.sqrt(27 / 28))


def test_spearman_is_one_on_a_monotone_non_linear_relation():
    x = [1.0, 2.0, 3.0, 4.0, 5.0]
    scores = regression_scores(x, [v**3 for v in x])
    assert scores["spearman"] == pytest.approx(1.0)
    assert scores["pearson"] < 0.99


def test_constant_predictions_show_no_correlation_rather_than_nan():
    scores = regression_scores([2.0, 2.0, 2.0], [1.0, 2.0, 3.0])
    assert scores["pearson"] == 0.0
    assert scores["spearman"] == 0.0
    assert scores["mse"] == pytest.approx(2 / 3)


def test_constant_targets_show_no_correlation():
    scores = regression_scores([1.0, 2.0, 3.0], [5.0, 5.0, 5.0])
    assert scores["pearson"] == 0.0
    assert scores["spearman"] == 0.0


def test_mse_matches_hand_computation():
    # squared errors 0, 0, 4
    assert regression_scores([1.0, 2.0, 3.0], [1.0, 2.0, 5.0])["mse"] == pytest.approx(4 / 3)


def test_regression_scores_are_plain_floats():
    scores = regression_scores(np.array([1.0, 2.0, 3.0]), np.array([1.0, 3.0, 2.0]))
    assert set(scores) == {"pearson", "spearman", "mse"}
    assert all(type(value) is float for value in scores.values())


def test_regression_rejects_a_length_mismatch():
    with pytest.raises(ValueError, match="3 and 2"):
        regression_scores([1.0, 2.0, 3.0], [1.0, 2.0])


def test_regression_rejects_empty_input():
    with pytest.raises(ValueError, match="empty"):
        regression_scores([], [])


# --------------------------------------------------------------------------- entities


def test_a_partial_span_does_not_count():
    scores = entity_scores([["B-PER", "I-PER"]], [["B-PER", "O"]])
    assert scores["precision"] == 0.0
    assert scores["recall"] == 0.0
    assert scores["f1"] == 0.0


def test_a_wrong_type_does_not_count():
    scores = entity_scores([["B-PER", "I-PER", "O"]], [["B-LOC", "I-LOC", "O"]])
    assert scores == {"f1": 0.0, "precision": 0.0, "recall": 0.0}


def test_an_exact_match_scores_one():
    tags = [["B-PER", "I-PER", "O", "B-LOC"]]
    assert entity_scores(tags, tags) == {"f1": 1.0, "precision": 1.0, "recall": 1.0}


def test_mixed_entities_match_hand_computation():
    # gold: PER(0-1), LOC(3), ORG(5); predicted: PER(0-1) right, LOC(5) wrong type.
    gold = [["B-PER", "I-PER", "O", "B-LOC", "O", "B-ORG"]]
    pred = [["B-PER", "I-PER", "O", "O", "O", "B-LOC"]]
    scores = entity_scores(gold, pred)
    assert scores["precision"] == pytest.approx(1 / 2)
    assert scores["recall"] == pytest.approx(1 / 3)
    assert scores["f1"] == pytest.approx(0.4)
    assert all(type(value) is float for value in scores.values())


def test_no_predicted_entities_scores_zero_without_nan():
    scores = entity_scores([["B-PER", "O"]], [["O", "O"]])
    assert scores == {"f1": 0.0, "precision": 0.0, "recall": 0.0}


def test_token_accuracy_counts_words_across_sentences():
    # sentence 0: 4 of 6 right (positions 3 and 5 wrong); sentence 1: 1 of 2 right.
    gold = [["B-PER", "I-PER", "O", "B-LOC", "O", "B-ORG"], ["O", "B-MISC"]]
    pred = [["B-PER", "I-PER", "O", "O", "O", "B-LOC"], ["O", "O"]]
    assert token_accuracy(gold, pred) == pytest.approx(5 / 8)


def test_a_sentence_length_mismatch_names_the_sentence_and_both_lengths():
    gold = [["O", "O"], ["B-PER", "I-PER", "O"]]
    pred = [["O", "O"], ["B-PER", "O"]]
    with pytest.raises(ValueError, match="sentence 1 has 3 true tags but 2 predicted"):
        entity_scores(gold, pred)
    with pytest.raises(ValueError, match="sentence 1 has 3 true tags but 2 predicted"):
        token_accuracy(gold, pred)


def test_a_sentence_count_mismatch_is_an_error():
    with pytest.raises(ValueError, match="2 and 1"):
        token_accuracy([["O"], ["O"]], [["O"]])


# --------------------------------------------------------------------------- SQuAD


def test_normalisation_drops_case_articles_punctuation_and_extra_space():
    assert normalize_answer("The  Cat!") == "cat"
    assert normalize_answer("  an Apple, a pear and THE plum. ") == "apple pear and plum"


def test_exact_match_ignores_articles_and_punctuation():
    assert exact_match("the Cat.", ["cat"]) == 1.0
    assert exact_match("a cat", ["dog"]) == 0.0


def test_span_f1_of_a_partial_overlap_matches_hand_computation():
    # [big, red, dog] vs [red, dog]: p = 2/3, r = 1, f1 = 0.8
    assert span_f1("the big red dog", ["red dog"]) == pytest.approx(0.8)


def test_span_f1_counts_repeated_tokens_once_each():
    # [dog, dog] vs [dog]: one common token, p = 1/2, r = 1, f1 = 2/3
    assert span_f1("dog dog", ["dog"]) == pytest.approx(2 / 3)


def test_scores_take_the_best_gold_answer():
    # vs [dog]: p = 1/3, r = 1 -> 0.5; vs [red, dog, house]: p = r = 2/3 -> 2/3
    assert span_f1("big red dog", ["dog", "red dog house"]) == pytest.approx(2 / 3)
    assert exact_match("Red dog", ["blue cat", "the red dog"]) == 1.0


def test_an_answer_that_normalises_to_nothing_has_no_f1_as_in_squad_v1():
    assert exact_match("the", ["a"]) == 1.0
    assert span_f1("the", ["a"]) == 0.0


def test_squad_scores_are_means_over_examples():
    # EM: 1, 0, 0; F1: 1, 0.8, 0
    scores = squad_scores(
        ["cat", "the big red dog", "nothing"],
        [["The cat"], ["red dog"], ["something"]],
    )
    assert scores["exact_match"] == pytest.approx(1 / 3)
    assert scores["f1"] == pytest.approx(0.6)
    assert set(scores) == {"exact_match", "f1"}


def test_an_example_without_gold_answers_is_an_error_naming_it():
    with pytest.raises(ValueError, match="example 1 has no gold answers"):
        squad_scores(["x", "y"], [["x"], []])


def test_squad_scores_reject_a_length_mismatch():
    with pytest.raises(ValueError, match="2 and 1"):
        squad_scores(["x", "y"], [["x"]])


# --------------------------------------------------------------------------- QA spans

#                  0    4    8     14   19
FIVE_WORDS = "one two three four five"
ONE, TWO, THREE, FOUR, FIVE = (0, 3), (4, 7), (8, 13), (14, 18), (19, 23)


def _logits(*rows: list[float]) -> np.ndarray:
    return np.array(rows, dtype=float)


def test_the_best_span_may_lie_in_a_later_window():
    # window 0 covers "one two three" (best pair "one": 3 + 3 = 6);
    # window 1 covers "three four five" (best pair "four five": 5 + 4 = 9).
    offsets = [
        [None, None, ONE, TWO, THREE],
        [None, None, THREE, FOUR, FIVE],
    ]
    starts = _logits([0, 0, 3, 1, 0], [0, 0, 0, 5, 1])
    ends = _logits([0, 0, 3, 1, 0], [0, 0, 0, 1, 4])
    answers = best_answers(starts, ends, [0, 0], offsets, [FIVE_WORDS], max_answer_length=10)
    assert answers == ["four five"]


def test_features_are_grouped_by_their_example():
    # features 0 and 2 belong to example 0 ("ab cd"), feature 1 to example 1 ("xyz uvw").
    # Example 0: feature 0's best is "ab" (1 + 1), feature 2's is "cd" (2 + 2), so "cd";
    # example 1's only feature scores "xyz uvw" (9 + 9) higher than either, yet stays its own.
    ab, cd = (0, 2), (3, 5)
    xyz, uvw = (0, 3), (4, 7)
    offsets = [[None, ab, cd], [None, xyz, uvw], [None, ab, cd]]
    starts = _logits([0, 1, 0], [0, 9, 0], [0, 0, 2])
    ends = _logits([0, 1, 0], [0, 0, 9], [0, 0, 2])
    contexts = ["ab cd", "xyz uvw"]
    answers = best_answers(starts, ends, [0, 1, 0], offsets, contexts, max_answer_length=5)
    assert answers == ["cd", "xyz uvw"]


def test_a_span_longer_than_max_answer_length_is_skipped():
    # (1, 3) scores 20 but is 3 tokens; under 2 tokens the best is (1, 2) = 10 + 2.
    offsets = [[None, ONE, TWO, THREE]]
    starts = _logits([0, 10, 1, 0])
    ends = _logits([0, 0, 2, 10])
    contexts = [FIVE_WORDS]
    assert best_answers(starts, ends, [0], offsets, contexts, max_answer_length=2) == ["one two"]
    assert best_answers(starts, ends, [0], offsets, contexts, max_answer_length=3) == ["one two three"]


def test_an_end_before_its_start_is_skipped():
    # (3, 1) would score 20; valid pairs: (3, 3) = 13 beats (1, 1) = 12.
    offsets = [[None, ONE, TWO, THREE]]
    starts = _logits([0, 2, 1, 10])
    ends = _logits([0, 10, 1, 3])
    assert best_answers(starts, ends, [0], offsets, [FIVE_WORDS], max_answer_length=5) == ["three"]


def test_a_span_touching_a_non_context_token_is_skipped():
    # start peaks on token 0 and end on token 3, both question/special tokens;
    # among context pairs (2, 2) = 2 + 3 beats (1, 2) = 1 + 3.
    offsets = [[None, ONE, TWO, None]]
    starts = _logits([10, 1, 2, 0])
    ends = _logits([0, 0, 3, 10])
    assert best_answers(starts, ends, [0], offsets, [FIVE_WORDS], max_answer_length=5) == ["two"]


def test_only_the_n_best_starts_and_ends_are_paired():
    # with n_best=1 the only pair is (3, 1), which ends before it starts
    offsets = [[None, ONE, TWO, THREE]]
    starts = _logits([0, 2, 1, 10])
    ends = _logits([0, 10, 1, 3])
    answers = best_answers(starts, ends, [0], offsets, [FIVE_WORDS], max_answer_length=5, n_best=1)
    assert answers == [""]


def test_an_example_without_a_valid_pair_answers_empty():
    # example 0 has a good window; example 1's only window has no context tokens;
    # example 2 has no window at all.
    offsets = [[None, ONE, TWO], [None, None, None]]
    starts = _logits([0, 5, 0], [9, 9, 9])
    ends = _logits([0, 5, 0], [9, 9, 9])
    contexts = [FIVE_WORDS, FIVE_WORDS, FIVE_WORDS]
    answers = best_answers(starts, ends, [0, 1], offsets, contexts, max_answer_length=5)
    assert answers == ["one", "", ""]


def test_best_answers_rejects_a_feature_of_an_unknown_example():
    offsets = [[None, ONE]]
    with pytest.raises(ValueError, match="feature 0 belongs to example 3"):
        best_answers(_logits([0, 1]), _logits([0, 1]), [3], offsets, [FIVE_WORDS], max_answer_length=5)


def test_best_answers_rejects_offsets_that_do_not_cover_the_tokens():
    with pytest.raises(ValueError, match="feature 0 has 1 offsets; expected one per token \\(2\\)"):
        best_answers(_logits([0, 1]), _logits([0, 1]), [0], [[ONE]], [FIVE_WORDS], max_answer_length=5)
