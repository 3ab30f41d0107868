"""The rung ladder: rung arithmetic, non-dominated ranking, promotion under asynchrony."""

from __future__ import annotations

import math

import pytest

from prunetune.config import rung_steps
from prunetune.search.rungs import RungLadder, keep_count, rank_keys, ranks_in_top

ACC_LAT = ["max", "min"]


@pytest.mark.parametrize(("grace", "eta", "max_steps", "expected"), [
    (10, 3, 30, [10]),  # the last step is not a rung
    (10, 3, 31, [10, 30]),
    (1, 3, 30, [1, 3, 9, 27]),
    (5, 2, 40, [5, 10, 20]),
    (30, 3, 30, []),
])
def test_rungs_are_grace_times_powers_of_eta_below_the_last_step(grace, eta, max_steps, expected):
    assert rung_steps(grace, eta, max_steps) == expected


@pytest.mark.parametrize(("n", "eta", "kept"), [(1, 3, 1), (2, 3, 1), (3, 3, 1), (4, 3, 2), (9, 3, 3), (10, 3, 4),
                                                (5, 2, 3)])
def test_the_top_ceil_n_over_eta_go_on(n, eta, kept):
    assert keep_count(n, eta) == kept


def test_fronts_come_first_then_hypervolume_contribution():
    import numpy as np

    # (accuracy, latency): two on the first front, one dominated, one failed (NaN).
    vectors = np.array([[0.9, 10.0], [0.8, 5.0], [0.7, 12.0], [math.nan, 1.0]])
    keys = rank_keys(vectors, ACC_LAT)
    assert keys[0][0] == keys[1][0] == 0.0 and keys[2][0] == 1.0
    assert keys[3][0] == math.inf  # a failed trial ranks behind every front
    assert keys[0][1] < 0 and keys[1][1] < 0  # both contribute to the first front


def test_identical_vectors_tie_and_a_tie_goes_on():
    others = [[0.9, 10.0], [0.5, 20.0]]
    # Equal to the best: one of n=3 goes on, and nobody is strictly ahead of a twin of the best.
    assert ranks_in_top([0.9, 10.0], others, ACC_LAT, 3)
    assert not ranks_in_top([0.6, 19.0], others, ACC_LAT, 3)


def test_a_failed_report_is_stopped_unless_it_is_alone():
    assert ranks_in_top([math.nan, 3.0], [], ACC_LAT, 3)  # the first at a rung always goes on
    assert not ranks_in_top([math.nan, 3.0], [[0.1, 100.0]], ACC_LAT, 3)


def test_one_objective_is_plain_asha():
    assert ranks_in_top([0.9], [[0.5], [0.6]], ["max"], 3)
    assert not ranks_in_top([0.55], [[0.5], [0.6]], ["max"], 3)


def test_a_trade_off_survives_against_a_single_better_accuracy():
    # Not dominated by the one trial ahead on accuracy: the first front holds both; with n = 4
    # two go on, so a trade-off point is kept where single-objective ASHA would stop it.
    others = [[0.95, 20.0], [0.5, 30.0], [0.4, 40.0]]
    assert ranks_in_top([0.7, 5.0], others, ACC_LAT, 3)
    assert not ranks_in_top([0.7], [[0.95], [0.5], [0.4]] + [[0.8]], ["max"], 3)


def test_promotion_under_asynchrony_depends_on_what_arrived_before():
    ladder = RungLadder(rungs=[2, 6], directions=ACC_LAT, reduction_factor=3)
    # Trials report out of order and at different times; each is judged on arrival.
    assert ladder.on_report("a", 2, [0.5, 10.0]).go_on  # first at the rung
    assert not ladder.on_report("b", 2, [0.4, 11.0]).go_on  # dominated by a
    assert ladder.on_report("c", 3, [0.9, 5.0]).go_on  # ranked at rung 2 (first report past it)
    assert ladder.on_report("a", 6, [0.6, 9.0]).go_on  # a reaches rung 6 before c does
    assert ladder.on_report("c", 4, [0.1, 1.0]).rung == 2  # not at rung 6 yet: rung 2's decision stands
    assert ladder.on_report("c", 6, [0.95, 4.0]).go_on
    assert ladder.stopped() == {"b": 2}
    # The first report past the top rung and the final step: nothing more to rank.
    assert ladder.on_report("a", 7, [0.0, 99.0]).go_on


def test_a_resumed_trial_gets_the_same_decision_at_a_rung_it_was_ranked_at():
    ladder = RungLadder(rungs=[2], directions=ACC_LAT, reduction_factor=3)
    ladder.on_report("a", 2, [0.9, 1.0])
    assert not ladder.on_report("b", 2, [0.1, 9.0]).go_on
    restored = RungLadder.from_json(ladder.to_json())
    assert not restored.on_report("b", 2, [0.99, 0.1]).go_on  # the better values of a re-run change nothing
    assert restored.records == ladder.records


def test_the_ladder_json_keeps_nan():
    ladder = RungLadder(rungs=[1], directions=ACC_LAT, reduction_factor=2)
    ladder.on_report("x", 1, [None, 2.0])
    restored = RungLadder.from_json(ladder.to_json())
    assert math.isnan(restored.records[1]["x"]["values"][0])


def test_the_benefit_of_the_doubt_ranks_a_trial_at_its_intervals_favourable_end():
    from prunetune.search.rungs import RungObjectives, favourable_vector

    report = {"accuracy": 0.80, "accuracy_ci_low": 0.74, "accuracy_ci_high": 0.86, "latency_ms": 5.0}
    # accuracy is maximised: its upper end; latency carries no interval: its estimate.
    assert favourable_vector(report, ["accuracy", "latency_ms"], ACC_LAT) == [0.86, 5.0]
    assert favourable_vector({"accuracy_drop": 0.02, "accuracy_drop_ci_low": -0.01}, ["accuracy_drop"],
                             ["min"]) == [-0.01]
    plain = RungObjectives(keys=("accuracy", "latency_ms"), directions=tuple(ACC_LAT))
    doubted = RungObjectives(keys=("accuracy", "latency_ms"), directions=tuple(ACC_LAT), benefit_of_doubt=True)
    assert plain.ranked_as(report) is None and doubted.ranked_as(report) == [0.86, 5.0]

    def ladder_with_two_better():  # of three trials at the rung, two go on
        ladder = RungLadder(rungs=[2], directions=ACC_LAT, reduction_factor=2)
        for name, values in (("a", [0.85, 4.0]), ("b", [0.84, 4.5])):
            ladder.on_report(name, 2, values)
        return ladder

    # Dominated by both on its estimates: moasha stops it. Within its interval it could beat both.
    assert not ladder_with_two_better().on_report("c", 2, plain.recorded(report)).go_on
    ladder = ladder_with_two_better()
    assert ladder.on_report("c", 2, doubted.recorded(report), ranked_as=doubted.ranked_as(report)).go_on
    assert ladder.records[2]["c"]["values"] == [0.80, 5.0]  # the later trials are ranked against its estimate
