"""Paired bootstrap intervals: every form's metric matches the task's own score, and the
intervals behave as intervals should on data whose answer is known."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from prunetune import metrics as M
from prunetune.intervals import (
    ExampleScores,
    difference_interval,
    excludes_zero,
    interval_columns,
    load_example_scores,
    paired_intervals,
    save_example_scores,
)
from prunetune.trainables.tasks._scores import entity_scores, sentence_entity_counts


def test_the_mean_form_is_accuracy():
    scores = ExampleScores.of_mean([1, 0, 1, 1])
    assert scores.metric() == 0.75


def test_the_pearson_form_matches_scipy_and_reports_zero_when_constant():
    rng = np.random.default_rng(0)
    x = rng.normal(size=50)
    y = x + rng.normal(scale=0.5, size=50)
    assert ExampleScores.of_pairs(x, y).metric() == pytest.approx(stats.pearsonr(x, y)[0], abs=1e-9)
    assert ExampleScores.of_pairs(np.ones(5), np.arange(5)).metric() == 0.0


def test_entity_counts_per_sentence_add_up_to_seqeval_f1():
    gold = [["B-PER", "I-PER", "O", "B-LOC"], ["O", "B-ORG"], ["B-PER"]]
    pred = [["B-PER", "I-PER", "O", "O"], ["O", "B-LOC"], ["B-PER"]]
    counts = sentence_entity_counts(gold, pred)
    assert counts == [(1, 1, 2), (0, 1, 1), (1, 1, 1)]
    f1 = ExampleScores.of_counts(*zip(*counts)).metric()
    assert f1 == pytest.approx(entity_scores(gold, pred)[M.F1])


def test_identical_models_have_a_drop_of_exactly_zero():
    scores = ExampleScores.of_mean(np.random.default_rng(1).integers(0, 2, size=200))
    found = paired_intervals(scores, scores, metric=M.ACCURACY)
    assert found[M.ACCURACY_DROP] == (0.0, 0.0)
    low, high = found[M.ACCURACY]
    assert low < scores.metric() < high


def test_pairing_makes_a_consistent_small_drop_distinguishable_from_zero():
    # The student errs on the teacher's examples plus 8 more: a 2-point drop on 400 examples.
    teacher = np.ones(400)
    teacher[:40] = 0
    student = teacher.copy()
    student[40:48] = 0
    found = paired_intervals(ExampleScores.of_mean(student), ExampleScores.of_mean(teacher), metric=M.ACCURACY)
    low, high = found[M.ACCURACY_DROP]
    assert 0 < low < 0.02 < high
    # Unpaired, the same two accuracies (0.88 and 0.90) would overlap: each alone spans several points.
    student_low, student_high = found[M.ACCURACY]
    assert student_high - student_low > 0.04


def test_the_interval_covers_the_truth_about_95_percent_of_the_time():
    rng = np.random.default_rng(2)
    covered = 0
    for trial in range(200):
        correct = rng.random(300) < 0.8
        low, high = paired_intervals(ExampleScores.of_mean(correct), ExampleScores.of_mean(np.ones(300)),
                                     metric=M.ACCURACY, resamples=400, seed=trial)[M.ACCURACY]
        covered += low <= 0.8 <= high
    assert 0.90 <= covered / 200 <= 0.99


def test_a_drop_of_a_metric_that_improves_when_it_falls_is_student_minus_teacher():
    # mse is not a headline, but the drop's direction comes from the metric contract.
    teacher = ExampleScores.of_mean([0.1] * 10)
    student = ExampleScores.of_mean([0.3] * 10)
    assert paired_intervals(student, teacher, metric=M.MSE)[M.drop_key(M.MSE)] == pytest.approx((0.2, 0.2))


def test_two_trials_are_told_apart_only_when_their_examples_show_it():
    base = np.zeros(300)
    base[:240] = 1
    same = base.copy()
    same[[0, 250]] = same[[250, 0]]  # one example swapped: the same accuracy
    worse = base.copy()
    worse[:30] = 0
    assert not excludes_zero(*difference_interval(ExampleScores.of_mean(base), ExampleScores.of_mean(same)))
    assert excludes_zero(*difference_interval(ExampleScores.of_mean(base), ExampleScores.of_mean(worse)))


def test_scores_of_another_split_or_form_are_refused():
    with pytest.raises(ValueError, match="share their form and examples"):
        paired_intervals(ExampleScores.of_mean([1, 0]), ExampleScores.of_mean([1, 0, 1]), metric=M.ACCURACY)
    with pytest.raises(ValueError, match="expected one of"):
        ExampleScores("median", np.ones((3, 1)))


def test_columns_are_named_by_the_metric_contract():
    columns = interval_columns({M.ACCURACY: (0.8, 0.9), M.ACCURACY_DROP: (0.0, 0.02)}, suffix=M.TEST_SUFFIX)
    assert columns == {"accuracy_test_ci_low": 0.8, "accuracy_test_ci_high": 0.9,
                       "accuracy_drop_test_ci_low": 0.0, "accuracy_drop_test_ci_high": 0.02}
    assert set(columns) <= set(M.UNCERTAINTY_METRICS)


def test_scores_round_trip_per_split_without_pickle(tmp_path):
    path = tmp_path / M.EXAMPLE_SCORES_FILE
    save_example_scores(path, "validation", ExampleScores.of_mean([1, 0, 1]))
    save_example_scores(path, "test", ExampleScores.of_counts([1], [2], [1]))
    assert load_example_scores(path, "validation").metric() == pytest.approx(2 / 3)
    assert load_example_scores(path, "test").form == "f1_counts"
    assert load_example_scores(path, "train") is None
    assert load_example_scores(tmp_path / "none.npz", "test") is None
