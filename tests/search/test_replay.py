"""The replay simulator on a tiny hand-made table where the right answers are known."""

from __future__ import annotations

import math

import optuna
import pytest

from prunetune import metrics as M
from prunetune.config import validate
from prunetune.search.replay import Curves, RecordedTrial, Report, replay, write_curves


def tiny_config(**search):
    return validate({
        "trial": {"max_steps": 30, "eval_every": 10},
        "space": {"trial.sparsity": {"uniform": [0.0, 0.9]}},
        "search": {"objectives": {"accuracy": "max", "latency_ms": "min"}, "sampler": "random", "max_concurrent": 1,
                   "num_trials": 4, "known_good_points": False, "retime": "off",
                   "starting_points": [{"trial.sparsity": 0.1}, {"trial.sparsity": 0.5}], **search},
    })


def trial(trial_id, sparsity, rung, final, *, projection=1.0):
    """One rung report at step 10 (5 s into the trial), the final one at 10 s."""
    rung_values = {M.ACCURACY: rung[0], M.LATENCY_MS: rung[1]}
    final_values = {M.ACCURACY: final[0], M.LATENCY_MS: final[1], M.ACCURACY_DROP: 1.0 - final[0]}
    return RecordedTrial(trial_id, {"trial.sparsity": sparsity},
                         (Report(10, 5.0, rung_values, projection_seconds=projection),),
                         Report(30, 10.0, final_values), failed=False)


@pytest.fixture
def curves():
    return Curves(config=tiny_config(), trials=[
        trial("A", 0.1, rung=(0.9, 10.0), final=(0.95, 10.0)),
        # Dominated at the rung, best at the end: the case early stopping gets wrong.
        trial("B", 0.5, rung=(0.5, 11.0), final=(0.97, 5.0)),
        trial("C", 0.9, rung=(0.3, 2.0), final=(0.4, 2.0)),
    ])


def test_a_sampled_point_is_answered_by_the_nearest_recorded_trial(curves):
    assert curves.nearest({"trial.sparsity": 0.31}).trial_id == "B"
    assert curves.nearest({"trial.sparsity": 0.29}).trial_id == "A"
    assert curves.nearest({"trial.sparsity": 0.85}).trial_id == "C"


def test_fifo_runs_trials_back_to_back_without_the_projection_time(curves):
    run = replay(curves, sampler="random", scheduler="fifo", seed=0, num_trials=4, horizon=25.0)
    # 10 s per trial minus the 1 s spent projecting objectives, which a FIFO search does not do.
    assert run.times == [9.0, 18.0, 27.0] and run.started == 3 and run.stopped == 0
    assert run.trial_seconds == pytest.approx(27.0)


def test_moasha_stops_a_trial_dominated_at_the_rung_and_frees_its_worker(curves):
    run = replay(curves, sampler="random", scheduler="moasha", seed=0, num_trials=4, horizon=14.0)
    # A: rung at 5 s (first, goes on), done at 10 s. B: starts at 10, ranked at 15 behind A, stopped.
    assert run.times == [10.0] and run.stopped == 1 and run.started == 2
    assert run.trial_seconds == pytest.approx(15.0)


def test_the_stopped_trial_is_told_with_its_rung_values(curves, monkeypatch):
    from prunetune.search import _driver

    studies = []
    original = _driver.make_searcher

    def keep(*args, **kwargs):
        searcher = original(*args, **kwargs)
        studies.append(searcher)
        return searcher

    monkeypatch.setattr(_driver, "make_searcher", keep)
    replay(curves, sampler="random", scheduler="moasha", seed=0, num_trials=4, horizon=14.0)
    trials = studies[0].study.get_trials(deepcopy=False)
    stopped = [t for t in trials if M.STOPPED_AT_STEP in t.user_attrs]
    assert len(stopped) == 1 and stopped[0].values == [0.5, 11.0]
    assert stopped[0].state == optuna.trial.TrialState.COMPLETE and stopped[0].params == {"trial.sparsity": 0.5}


def test_hypervolume_grows_with_finished_trials_and_time_to_target(curves):
    run = replay(curves, sampler="random", scheduler="fifo", seed=0, num_trials=4, horizon=25.0)
    assert run.hypervolumes == sorted(run.hypervolumes) and run.hypervolumes[1] > run.hypervolumes[0]
    assert run.time_to(run.hypervolumes[1]) == 18.0
    assert run.time_to(10.0) == math.inf and run.hypervolume_at(5.0) == 0.0


def test_a_curves_table_round_trips_through_parquet(tmp_path):
    import json

    import pyarrow.parquet as pq
    import yaml

    from prunetune.search._results import trial_row, write_results

    run = tmp_path / "run"
    (run / "tune" / "t1").mkdir(parents=True)
    (run / "config.yaml").write_text(yaml.safe_dump(tiny_config().to_dict()))
    reports = [{M.STEP: 10, "time_total_s": 4.0, M.ACCURACY: 0.5, M.LATENCY_MS: 3.0, M.PROJECTION_SECONDS: 0.5},
               {**{key: 1.0 for key in M.FINAL_METRIC_KEYS}, M.STEP: 30, "time_total_s": 9.0, M.RUNG_SECONDS: 3.0}]
    (run / "tune" / "t1" / "result.json").write_text("\n".join(json.dumps(r) for r in reports))
    write_results([trial_row(trial_id="t1", status="TERMINATED", trial={"trial.sparsity": 0.4}, result=reports[-1],
                             started_at=0.0, finished_at=10.0, trial_dir=str(run / "trials" / "t1"))],
                  run / "results.parquet")

    write_curves(run, tmp_path / "curves.parquet", command="record")
    assert pq.read_table(tmp_path / "curves.parquet").num_rows == 2
    curves = Curves.read(tmp_path / "curves.parquet")
    (recorded,) = curves.trials
    assert curves.command == "record" and recorded.params == {"trial.sparsity": 0.4}
    # The clock includes the worker's start: the trial's wall time (10 s) ends it, 1 s before Tune's first.
    assert recorded.reports[0].seconds == 5.0 and recorded.final.seconds == 10.0
    assert recorded.reports[0].values[M.ACCURACY] == 0.5 and recorded.reports[0].projection_seconds == 0.5
    assert recorded.reports[0].evaluation_seconds == 2.5  # its rung time less its projection


def test_a_recording_that_was_resumed_reads_each_trial_from_the_experiment_that_finished_it(tmp_path):
    import json

    import yaml

    from prunetune.search._results import trial_row, write_results

    run = tmp_path / "run"
    reports = [{M.STEP: 10, "time_total_s": 4.0, M.ACCURACY: 0.5, M.LATENCY_MS: 3.0, M.PROJECTION_SECONDS: 0.5},
               {**{key: 1.0 for key in M.FINAL_METRIC_KEYS}, M.STEP: 30, "time_total_s": 9.0}]
    for folder, written in (("tune/t1", reports[:1]), ("tune/resumed-1/t1", reports), ("tune/t2", reports[:1])):
        (run / folder).mkdir(parents=True)
        (run / folder / "result.json").write_text("\n".join(json.dumps(r) for r in written))
    (run / "config.yaml").write_text(yaml.safe_dump(tiny_config().to_dict()))
    rows = [trial_row(trial_id="t1", status="TERMINATED", trial={"trial.sparsity": 0.4}, result=reports[-1],
                      started_at=0.0, finished_at=10.0, trial_dir=str(run / "trials" / "t1")),
            # cut short when the recording stopped: its run on resume has not ended yet
            trial_row(trial_id="t2", status="RUNNING", trial={"trial.sparsity": 0.6}, result=reports[0],
                      started_at=0.0, finished_at=5.0, trial_dir=str(run / "trials" / "t2"))]
    write_results(rows, run / "results.parquet")

    write_curves(run, tmp_path / "curves.parquet", command="record")
    curves = Curves.read(tmp_path / "curves.parquet")
    (recorded,) = curves.trials
    assert recorded.params == {"trial.sparsity": 0.4} and recorded.final is not None


def test_moasha_interval_keeps_the_trial_whose_rung_interval_reaches_the_front(curves):
    # B's rung accuracy, 0.5, lies on 40 examples or so: its interval reaches 0.92, beyond A's 0.9.
    (a, b, c) = curves.trials
    doubted = Report(10, 5.0, {**b.reports[0].values, **dict(zip(M.interval_keys(M.ACCURACY), (0.3, 0.92)))},
                     projection_seconds=1.0)
    curves.trials[1] = RecordedTrial(b.trial_id, b.params, (doubted,), b.final, failed=False)
    run = replay(curves, sampler="random", scheduler="moasha-interval", seed=0, num_trials=4, horizon=14.0)
    # As with moasha, A finishes at 10 s; B is ranked at 15 s with 0.92 and goes on, to finish at 20 s.
    assert run.stopped == 0 and run.times == [10.0, 20.0]
    assert replay(curves, sampler="random", scheduler="moasha", seed=0, num_trials=4, horizon=14.0).stopped == 1


def test_a_report_between_rungs_costs_a_live_trial_no_evaluation():
    # Recorded with a report at every 10 steps; moasha's only rung is step 10 (30 is the end).
    reports = (Report(10, 5.0, {M.ACCURACY: 0.9, M.LATENCY_MS: 10.0}, projection_seconds=1.0, evaluation_seconds=2.0),
               Report(20, 10.0, {M.ACCURACY: 0.92, M.LATENCY_MS: 10.0}, projection_seconds=1.0,
                      evaluation_seconds=2.0))
    final = Report(30, 15.0, {M.ACCURACY: 0.95, M.LATENCY_MS: 10.0, M.ACCURACY_DROP: 0.05})
    curves = Curves(config=tiny_config(), trials=[RecordedTrial("A", {"trial.sparsity": 0.1}, reports, final,
                                                                 failed=False)])
    moasha = replay(curves, sampler="random", scheduler="moasha", seed=0, num_trials=1, horizon=1.0, max_trials=1)
    assert moasha.times == [12.0]  # the report at step 20 is a checkpoint: no evaluation, no projection
    fifo = replay(curves, sampler="random", scheduler="fifo", seed=0, num_trials=1, horizon=1.0, max_trials=1)
    assert fifo.times == [13.0]  # every report evaluates; none projects
