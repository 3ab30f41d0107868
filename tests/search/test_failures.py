"""A failing trial fails alone, its reason is recorded, and the sampler learns to avoid its region."""

from __future__ import annotations

import math

import optuna
import pyarrow.parquet as pq
import pytest
from optuna.distributions import FloatDistribution
from ray.tune.search.optuna import OptunaSearch

from prunetune.search import ParetoOptunaSearch, make_sampler, run_search
from prunetune.search.synthetic import SyntheticTrial, synthetic_teacher
from tests.search.conftest import synthetic_config

FAIL_ABOVE = 0.5
OBJECTIVES = {"accuracy": "max", "latency_ms": "min"}
SPACE = {"trial.sparsity": FloatDistribution(0.0, 0.95), "trial.temperature": FloatDistribution(1.0, 16.0, log=True)}


def evaluate(params: dict) -> dict | None:
    """The synthetic front: sparser is faster and less accurate; above FAIL_ABOVE the trial fails."""
    sparsity = params["trial.sparsity"]
    if sparsity > FAIL_ABOVE:
        return None
    return {"accuracy": 0.95 - 0.35 * sparsity**3 - 0.01 * math.log(params["trial.temperature"] / 3) ** 2,
            "latency_ms": 10 * (0.15 + 0.85 * (1 - sparsity))}


def drive(searcher, trials: int) -> list[bool]:
    """Run ``trials`` sequential trials through a Tune searcher; returns whether each failed."""
    failed = []
    for index in range(trials):
        trial_id = f"t{index}"
        params = searcher.suggest(trial_id)
        result = evaluate(params)
        # A configuration that fails reports why (the trainable's failure report), without objectives.
        searcher.on_trial_complete(trial_id, result=result or {"failed": True, "error": "TrialError: fails"})
        failed.append(result is None)
    return failed


def pareto_search(tmp_path, sampler: str) -> ParetoOptunaSearch:
    return ParetoOptunaSearch(SPACE, objectives=OBJECTIVES, storage_url=f"sqlite:///{tmp_path / 'study.db'}",
                              study_name="s", run_dir=str(tmp_path),
                              sampler=make_sampler(sampler, seed=1, num_trials=40, population_size=8,
                                                   n_startup_trials=8))


@pytest.mark.parametrize("sampler, trials, allowed", [("tpe", 40, 6), ("nsga2", 40, 6), ("gp", 24, 3)])
def test_sampler_moves_away_from_a_failing_region(sampler, trials, allowed, tmp_path):
    failed = drive(pareto_search(tmp_path, sampler), trials)
    # Random sampling fails in about half the trials (0.45 of 0.95) and Ray's plain
    # OptunaSearch in nearly all of them (next test). Told as infeasible, failures push the
    # sampler back; it still probes the boundary, where the fastest feasible trials lie.
    assert sum(failed[-16:]) <= allowed, failed


def test_plain_optuna_search_keeps_sampling_the_failing_region(tmp_path):
    """The control: Ray's OptunaSearch tells failures as FAIL, which Optuna's samplers ignore."""
    searcher = OptunaSearch(SPACE, metric=list(OBJECTIVES), mode=list(OBJECTIVES.values()),
                            sampler=optuna.samplers.TPESampler(seed=1, n_startup_trials=8),
                            storage=optuna.storages.RDBStorage(f"sqlite:///{tmp_path / 'plain.db'}"))
    failed = []
    for index in range(40):  # Ray's searcher tells a trial without objectives as pruned
        params = searcher.suggest(f"t{index}")
        result = evaluate(params)
        searcher.on_trial_complete(f"t{index}", result=result, error=result is None)
        failed.append(result is None)
    assert sum(failed[-16:]) >= 12, failed


def test_failures_are_told_as_infeasible(tmp_path):
    searcher = pareto_search(tmp_path, "tpe")
    drive(searcher, 12)
    trials = searcher.study.get_trials()
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in trials)
    for trial in trials:
        failed = trial.params["trial.sparsity"] > FAIL_ABOVE
        assert trial.user_attrs["failed"] is failed
        assert (trial.constraints["failed"] > 0) is failed
        assert all(math.isfinite(v) for v in trial.values)


def test_a_lost_worker_is_not_told_as_an_infeasible_configuration(tmp_path):
    searcher = pareto_search(tmp_path, "tpe")
    searcher.suggest("lost")
    searcher.on_trial_complete("lost", result=None, error=True)  # Tune gave up: the node died, retries spent
    (trial,) = searcher.study.get_trials()
    assert trial.state == optuna.trial.TrialState.FAIL  # samplers leave it out
    assert "failed" not in trial.user_attrs and not trial.constraints


def test_a_failing_trainable_fails_alone_with_its_reason(tmp_path, ray_local):
    config = synthetic_config(sampler="tpe", num_trials=12, max_concurrent=1, n_startup_trials=4,
                              known_good_points=False)
    outcome = run_search(config, run_dir=tmp_path / "run", trial_fn=SyntheticTrial(fail_above=FAIL_ABOVE),
                         teacher_fn=synthetic_teacher)
    rows = pq.read_table(tmp_path / "run" / "results.parquet").to_pandas().sort_values("started_at")
    assert len(rows) == 12 and outcome.num_trials == 12
    errored = rows[rows["status"] == "ERROR"]
    assert (errored["trial.sparsity"] > FAIL_ABOVE).all() and len(errored) == outcome.num_failed >= 1
    assert errored["error"].str.startswith("TrialError: synthetic failure: trial.sparsity").all()
    assert errored["accuracy"].isna().all() and errored["node_id"].notna().all()
    assert rows[rows["status"] == "TERMINATED"]["error"].isna().all()
    # After the 4 random start-up trials, TPE keeps away from the failing region.
    assert (rows["status"][4:] == "ERROR").sum() <= 2, list(rows["status"])


def test_a_nan_objective_is_a_failure(tmp_path, ray_local):
    config = synthetic_config(sampler="random", num_trials=3, known_good_points=False,
                              space={"trial.sparsity": {"uniform": [0.2, 0.3]}})
    outcome = run_search(config, run_dir=tmp_path / "run", trial_fn=SyntheticTrial(nan_above=0.1),
                         teacher_fn=synthetic_teacher)
    rows = pq.read_table(tmp_path / "run" / "results.parquet").to_pandas()
    assert outcome.num_failed == 3 and outcome.front_size == 0
    assert rows["error"].str.contains("objective accuracy = nan").all()
    study = optuna.load_study(study_name="prunetune", storage=f"sqlite:///{tmp_path / 'run' / 'study.db'}")
    assert all(t.user_attrs["failed"] for t in study.trials)
