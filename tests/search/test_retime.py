"""The front re-timed quietly: which trials, what is kept, the task's resources, and resuming it."""

import math

import pytest
import ray

from prunetune import metrics as M
from prunetune.names import TERMINATED
from prunetune.search import resume_search, retime_search, run_search
from prunetune.search._results import read_rows
from prunetune.search._retime import (
    apply_retiming,
    candidates,
    is_flagged,
    retime_resources,
)
from prunetune.search.synthetic import (
    IN_SEARCH_SLOWDOWN,
    SyntheticRetime,
    SyntheticTrial,
    synthetic_teacher,
)
from tests.search.conftest import synthetic_config

OBJECTIVES = {M.ACCURACY: "max", M.LATENCY_MS: "min"}


def row(trial_id, accuracy, latency, *, retimed_latency=None):
    values = {"trial_id": trial_id, "status": TERMINATED, M.ACCURACY: accuracy, M.LATENCY_MS: latency}
    if retimed_latency is not None:
        values = apply_retiming(values, {M.LATENCY_MS: retimed_latency})
    return values


def test_first_the_front_of_the_in_search_figures():
    rows = [row("a", 0.9, 10.0), row("b", 0.8, 5.0), row("c", 0.7, 9.0), row("d", 0.85, 12.0)]
    assert candidates(rows, OBJECTIVES, policy="front") == ["a", "b"]
    assert candidates(rows, OBJECTIVES, policy="all") == ["a", "b", "c", "d"]
    assert candidates(rows, OBJECTIVES, policy="off") == []


def test_then_every_trial_that_could_still_reach_the_front():
    # a and b were re-timed: a's latency was 2x too slow in the search.
    rows = [row("a", 0.9, 10.0, retimed_latency=5.0), row("b", 0.8, 5.0, retimed_latency=4.5),
            row("c", 0.85, 10.0), row("d", 0.7, 20.0)]
    # c at 10 / (2 * 1.05) = 4.8 ms would beat a (5.0 ms at 0.9)? No: less accurate; but it would
    # not be dominated by b (0.8 at 4.5 ms): it could be on the front. d at 9.5 ms cannot.
    assert candidates(rows, OBJECTIVES, policy="front") == ["c"]
    done = [*rows[:2], row("c", 0.85, 10.0, retimed_latency=9.0), rows[3]]
    assert candidates(done, OBJECTIVES, policy="front") == []


def test_in_search_figures_are_kept_once_and_the_gap_flagged():
    retimed = apply_retiming(row("a", 0.9, 13.0), {M.LATENCY_MS: 10.0, M.SPEEDUP: 3.0})
    assert retimed[M.in_search(M.LATENCY_MS)] == 13.0 and retimed[M.LATENCY_MS] == 10.0
    assert retimed[M.RETIME_RATIO] == pytest.approx(1.3) and retimed[M.RETIMED] and is_flagged(retimed)
    again = apply_retiming(retimed, {M.LATENCY_MS: 10.5})
    assert again[M.in_search(M.LATENCY_MS)] == 13.0  # the search's figure is never overwritten
    assert not is_flagged(apply_retiming(row("b", 0.9, 10.5), {M.LATENCY_MS: 10.0}))


def test_the_retiming_task_takes_a_whole_node():
    assert retime_resources(cpus_per_node=16, gpu=False) == {"num_cpus": 16.0, "num_gpus": 0.0}
    assert retime_resources(cpus_per_node=8, gpu=True) == {"num_cpus": 8.0, "num_gpus": 1.0}


def test_a_search_retimes_its_front_and_the_front_uses_those_figures(tmp_path, ray_local):
    config = synthetic_config(sampler="random", num_trials=6, retime="front")
    outcome = run_search(config, run_dir=tmp_path / "run", trial_fn=SyntheticTrial(), teacher_fn=synthetic_teacher,
                         retime_fn=SyntheticRetime())
    rows = {r["trial_id"]: r for r in read_rows(tmp_path / "run" / "results.parquet")}
    retimed = [r for r in rows.values() if r[M.RETIMED]]
    assert set(outcome.retimed) == {r["trial_id"] for r in retimed} and retimed
    for r in retimed:
        assert r[M.LATENCY_MS] == pytest.approx(r[M.in_search(M.LATENCY_MS)] / IN_SEARCH_SLOWDOWN)
        assert r[M.RETIME_RATIO] == pytest.approx(IN_SEARCH_SLOWDOWN)
    assert set(outcome.flagged) == set(outcome.retimed)  # 30% off: every one is flagged
    assert candidates(list(rows.values()), config.search.objectives, policy="front") == []


def test_a_search_stopped_while_retiming_resumes_the_retiming(tmp_path, ray_local):
    calls = tmp_path / "calls"
    config = synthetic_config(sampler="random", num_trials=6, retime="all")
    with pytest.raises(ray.exceptions.RayTaskError, match="stopped"):
        run_search(config, run_dir=tmp_path / "run", trial_fn=SyntheticTrial(), teacher_fn=synthetic_teacher,
                   retime_fn=SyntheticRetime(calls_file=str(calls), fail_at=3))
    done_before = [r["trial_id"] for r in read_rows(tmp_path / "run" / "results.parquet") if r[M.RETIMED]]
    assert len(done_before) == 2
    outcome = resume_search(tmp_path / "run", trial_fn=SyntheticTrial(), teacher_fn=synthetic_teacher,
                            retime_fn=SyntheticRetime(calls_file=str(calls)))
    rows = read_rows(tmp_path / "run" / "results.parquet")
    assert len(rows) == 6 and all(r[M.RETIMED] for r in rows)
    assert not set(done_before) & set(outcome.retimed)  # what was re-timed stays re-timed
    assert len(calls.read_text().split()) == 6 + 1  # the stopped one was timed again, nothing else
    assert all(math.isclose(r[M.RETIME_RATIO], IN_SEARCH_SLOWDOWN) for r in rows)


def test_report_retime_retimes_a_finished_search(tmp_path, ray_local):
    config = synthetic_config(sampler="random", num_trials=4)  # retime off in the search itself
    run_search(config, run_dir=tmp_path / "run", trial_fn=SyntheticTrial(), teacher_fn=synthetic_teacher)
    assert not any(r[M.RETIMED] for r in read_rows(tmp_path / "run" / "results.parquet"))
    outcome = retime_search(tmp_path / "run", policy="all", retime_fn=SyntheticRetime())
    assert len(outcome.retimed) == 4
