"""The front evaluated on the held-out test split: which trials, what lands in results.parquet,
and the report path on a finished run."""

import math

from prunetune import metrics as M
from prunetune.names import TERMINATED
from prunetune.search import evaluate_test_search, run_search
from prunetune.search._held_out import held_out_candidates
from prunetune.search._results import read_rows
from prunetune.search.synthetic import HELD_OUT_BIAS, SyntheticHeldOut, SyntheticTrial, synthetic_teacher
from tests.search.conftest import synthetic_config

OBJECTIVES = {M.ACCURACY: "max", M.LATENCY_MS: "min"}


def test_only_front_trials_not_yet_evaluated_are_candidates():
    rows = [{"trial_id": "a", "status": TERMINATED, M.ACCURACY: 0.9, M.LATENCY_MS: 10.0},
            {"trial_id": "b", "status": TERMINATED, M.ACCURACY: 0.8, M.LATENCY_MS: 5.0},
            {"trial_id": "c", "status": TERMINATED, M.ACCURACY: 0.7, M.LATENCY_MS: 9.0},
            {"trial_id": "d", "status": "ERROR", M.ACCURACY: None, M.LATENCY_MS: None}]
    assert held_out_candidates(rows, OBJECTIVES, kind="classification") == ["a", "b"]
    rows[0][M.held_out_key(M.ACCURACY)] = 0.88
    assert held_out_candidates(rows, OBJECTIVES, kind="classification") == ["b"]


def test_report_evaluates_a_finished_runs_front_once(tmp_path, ray_local, capsys):
    config = synthetic_config(sampler="random", num_trials=6)
    run_search(config, run_dir=tmp_path / "run", trial_fn=SyntheticTrial(), teacher_fn=synthetic_teacher)
    assert not any(r.get(M.held_out_key(M.ACCURACY)) for r in read_rows(tmp_path / "run" / "results.parquet"))

    done = evaluate_test_search(tmp_path / "run", held_out_fn=SyntheticHeldOut())
    rows = {r["trial_id"]: r for r in read_rows(tmp_path / "run" / "results.parquet")}
    front = held_out_candidates([{k: v for k, v in r.items() if not k.endswith("_test")} for r in rows.values()],
                                config.search.objectives, kind="classification")
    assert sorted(done) == sorted(front) and done
    for trial_id in done:
        row = rows[trial_id]
        assert math.isclose(row[M.held_out_key(M.ACCURACY)], row[M.ACCURACY] - HELD_OUT_BIAS)
        low, high = (row[k] for k in M.interval_keys(M.held_out_key(M.ACCURACY_DROP)))
        assert low < row[M.held_out_key(M.ACCURACY_DROP)] < high
    assert all(rows[t].get(M.held_out_key(M.ACCURACY)) is None for t in rows if t not in done)
    # Once evaluated, a trial is not evaluated again.
    assert evaluate_test_search(tmp_path / "run", held_out_fn=SyntheticHeldOut()) == []


def test_a_search_that_ranked_on_the_test_split_has_nothing_held_out(tmp_path, ray_local):
    config = synthetic_config(sampler="random", num_trials=2).with_values({"task.eval_split": "test"})
    run_search(config, run_dir=tmp_path / "run", trial_fn=SyntheticTrial(), teacher_fn=synthetic_teacher)
    lines = []
    from prunetune.cluster import RunDir
    from prunetune.search import saved_config
    from prunetune.search._held_out import evaluate_run_on_test

    run = RunDir(tmp_path / "run")
    assert evaluate_run_on_test(run, config=saved_config(run), held_out_fn=SyntheticHeldOut(),
                                say=lines.append) == []
    assert "ranked on the test split itself" in lines[0]
