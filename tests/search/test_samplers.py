"""The same small search with every sampler: trials run, results and the study are written."""

from __future__ import annotations

import numpy as np
import optuna
import pyarrow.parquet as pq
import pytest
import yaml

from prunetune.metrics import FINAL_METRIC_KEYS, TEXT_METRICS
from prunetune.pareto import nondominated_mask
from prunetune.search import run_search
from prunetune.search._results import METRIC_COLUMNS, RETIME_COLUMNS
from prunetune.search.synthetic import SyntheticTrial, synthetic_teacher
from tests.search.conftest import synthetic_config

BOOKKEEPING = ["trial_id", "status", "error", "started_at", "finished_at", "wall_seconds", "node_id", "trial_dir"]


@pytest.mark.parametrize("sampler", ["nsga2", "tpe", "gp", "random"])
def test_small_search_with_each_sampler(sampler, tmp_path, ray_local):
    config = synthetic_config(sampler=sampler, num_trials=5, n_startup_trials=3, population_size=4)
    outcome = run_search(config, run_dir=tmp_path / "run", trial_fn=SyntheticTrial(), teacher_fn=synthetic_teacher)

    run = tmp_path / "run"
    for name in ("config.yaml", "study.db", "results.parquet", "teacher.json", "tune"):
        assert (run / name).exists(), name
    table = pq.read_table(run / "results.parquet").to_pandas()
    assert len(table) == 5 and set(table["status"]) == {"TERMINATED"}
    assert outcome.num_trials == 5 and outcome.num_failed == 0

    objectives = config.search.objectives
    front = nondominated_mask(table[list(objectives)].to_numpy(), list(objectives.values()))
    assert front.any() and outcome.front_size == front.sum()

    study = optuna.load_study(study_name="prunetune", storage=f"sqlite:///{run / 'study.db'}")
    complete = study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))
    ran = [t for t in complete if "duplicate_of" not in t.user_attrs]  # clones are told, not run
    assert sorted(t.user_attrs["tune_trial_id"] for t in ran) == sorted(table["trial_id"])
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert saved["trial"]["method"] == "magnitude"  # fixed dimensions are part of the resolved config
    assert saved["teacher"]["cache_dir"] == str(run / "teacher")


def test_results_schema_and_rows(tmp_path, ray_local):
    config = synthetic_config(sampler="random", num_trials=3)
    run_search(config, run_dir=tmp_path / "run", trial_fn=SyntheticTrial(), teacher_fn=synthetic_teacher)
    table = pq.read_table(tmp_path / "run" / "results.parquet")
    names = table.column_names
    trial_keys = [n for n in names if n.startswith("trial.")]
    assert names == BOOKKEEPING + trial_keys + list(METRIC_COLUMNS) + list(TEXT_METRICS) + list(RETIME_COLUMNS) + ["stopped_at_step"]
    assert list(METRIC_COLUMNS[:len(FINAL_METRIC_KEYS) + 2]) == [*FINAL_METRIC_KEYS, "teacher_accuracy", "teacher_latency_ms"]
    assert {"trial.sparsity", "trial.block_size", "trial.latency.batch_size", "trial.emissions.country_iso_code"} <= set(trial_keys)
    rows = table.to_pandas()
    assert (rows["finished_at"] >= rows["started_at"]).all() and (rows["wall_seconds"] > 0).all()
    assert rows["node_id"].str.len().gt(20).all()
    for _, row in rows.iterrows():
        assert row["trial_dir"] == str(tmp_path / "run" / "trials" / row["trial_id"])
        assert (tmp_path / "run" / "trials" / row["trial_id"] / "result.json").is_file()
    assert np.allclose(rows["speedup"], rows["teacher_latency_ms"] / rows["latency_ms"])
    assert str(table.schema.field("trial.block_size").type) == "int64"
    assert str(table.schema.field("trial.method").type) == "string"


def test_known_good_points_run_first(tmp_path, ray_local):
    config = synthetic_config(sampler="random", num_trials=4, max_concurrent=1)
    run_search(config, run_dir=tmp_path / "run", trial_fn=SyntheticTrial(), teacher_fn=synthetic_teacher)
    rows = pq.read_table(tmp_path / "run" / "results.parquet").to_pandas().sort_values("started_at")
    # Mirashi et al.'s 25% and nn_pruning's 50% hybrid, at T = 2 with 32x32 blocks.
    assert list(rows["trial.sparsity"][:2]) == [0.25, 0.5]
    assert set(rows["trial.temperature"][:2]) == {2.0} and set(rows["trial.block_size"][:2]) == {32}


def test_an_existing_run_directory_is_not_overwritten(tmp_path, ray_local):
    config = synthetic_config(sampler="random", num_trials=1)
    run_search(config, run_dir=tmp_path / "run", trial_fn=SyntheticTrial(), teacher_fn=synthetic_teacher)
    from prunetune.errors import ConfigError

    with pytest.raises(ConfigError, match="--resume"):
        run_search(config, run_dir=tmp_path / "run", trial_fn=SyntheticTrial(), teacher_fn=synthetic_teacher)
