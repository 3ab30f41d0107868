"""Constraints reach the sampler (named Optuna constraints), which then prefers feasible trials."""

from __future__ import annotations

import math

import optuna
import pyarrow.parquet as pq
import pytest
from optuna.distributions import FloatDistribution

from prunetune.search import (
    ParetoOptunaSearch,
    constraint_values,
    make_sampler,
    run_search,
)
from prunetune.search.synthetic import SyntheticTrial, synthetic_teacher
from tests.search.conftest import synthetic_config

MAX_LATENCY_MS = 4.0
OBJECTIVES = {"accuracy": "max", "emissions_kg": "min"}
SPACE = {"trial.sparsity": FloatDistribution(0.0, 0.95)}


def evaluate(params: dict) -> dict:
    sparsity = params["trial.sparsity"]
    return {"accuracy": 0.95 - 0.35 * sparsity**3, "latency_ms": 10 * (0.15 + 0.85 * (1 - sparsity)),
            "emissions_kg": 1e-5 * (1.5 - sparsity)}


def feasible(params: dict) -> bool:
    return evaluate(params)["latency_ms"] <= MAX_LATENCY_MS  # sparsity >= 0.7: a quarter of the range


def test_constraint_values():
    result = {"accuracy_drop": 0.01, "latency_ms": 5.0, "emissions_kg": 2e-6}
    limits = {"max_accuracy_drop": 0.02, "max_latency_ms": 4.0, "max_emissions_kg": 1e-6}
    values = constraint_values(result, limits, failed=False)
    assert values == pytest.approx({"failed": -1.0, "max_accuracy_drop": -0.01, "max_latency_ms": 1.0,
                                    "max_emissions_kg": 1e-6})
    assert all(v > 0 for v in constraint_values(None, limits, failed=True).values())


def test_a_drop_limit_on_the_upper_bound_is_told_on_the_intervals_upper_end():
    from prunetune.config import validate

    constraints = validate({"search": {"constraints": {"max_accuracy_drop": 0.02, "max_latency_ms": 4.0,
                                                       "drop_bound": "upper"}}}).search.constraints
    assert constraints.limits() == {"max_accuracy_drop": 0.02, "max_latency_ms": 4.0}
    assert constraints.columns() == {"max_accuracy_drop": "accuracy_drop_ci_high", "max_latency_ms": "latency_ms"}
    # A drop of 1 point measured on few examples: its interval reaches 3.5 points, past the limit.
    result = {"accuracy_drop": 0.01, "accuracy_drop_ci_high": 0.035, "latency_ms": 3.0}
    told = constraint_values(result, constraints.limits(), failed=False, columns=constraints.columns())
    assert told["max_accuracy_drop"] == pytest.approx(0.015) and told["max_latency_ms"] == pytest.approx(-1.0)
    assert constraint_values(result, constraints.limits(), failed=False)["max_accuracy_drop"] < 0  # the estimate


@pytest.mark.parametrize("sampler, trials, wanted", [("tpe", 40, 8), ("gp", 24, 10)])
def test_sampler_prefers_feasible_trials(sampler, trials, wanted, tmp_path):
    searcher = ParetoOptunaSearch(
        SPACE, objectives=OBJECTIVES, storage_url=f"sqlite:///{tmp_path / 'study.db'}", study_name="s",
        run_dir=str(tmp_path),
        sampler=make_sampler(sampler, seed=0, num_trials=trials, n_startup_trials=8),
        limits={"max_latency_ms": MAX_LATENCY_MS},
    )
    ok = []
    for index in range(trials):
        params = searcher.suggest(f"t{index}")
        searcher.on_trial_complete(f"t{index}", result=evaluate(params))
        ok.append(feasible(params))
    # Random sampling meets the limit in a quarter of the trials (4 of 16); the front of
    # the two objectives spans the whole range, so only the constraint pulls upwards.
    assert sum(ok[-16:]) >= wanted, ok
    trial = searcher.study.trials[-1]
    assert set(trial.constraints) == {"failed", "max_latency_ms"}
    latency = evaluate(trial.params)["latency_ms"]
    assert trial.constraints["max_latency_ms"] == pytest.approx(latency - MAX_LATENCY_MS)


def test_search_constraints_are_told_not_only_filtered(tmp_path, ray_local):
    config = synthetic_config(sampler="nsga2", num_trials=4, population_size=4,
                              constraints={"max_latency_ms": MAX_LATENCY_MS, "max_accuracy_drop": 0.05})
    run_search(config, run_dir=tmp_path / "run", trial_fn=SyntheticTrial(), teacher_fn=synthetic_teacher)
    rows = pq.read_table(tmp_path / "run" / "results.parquet").to_pandas()
    assert len(rows) == 4  # infeasible trials are results too; the analysis filters
    study = optuna.load_study(study_name="prunetune", storage=f"sqlite:///{tmp_path / 'run' / 'study.db'}")
    by_id = {t.user_attrs["tune_trial_id"]: t for t in study.trials}
    for _, row in rows.iterrows():
        constraints = by_id[row["trial_id"]].constraints
        assert constraints["max_latency_ms"] == pytest.approx(row["latency_ms"] - MAX_LATENCY_MS)
        assert constraints["max_accuracy_drop"] == pytest.approx(row["accuracy_drop"] - 0.05)
        assert math.isclose(constraints["failed"], -1.0)
