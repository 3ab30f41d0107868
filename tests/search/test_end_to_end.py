"""`prunetune search` end to end with the real trial, on a tiny BERT built in code."""

from __future__ import annotations

import json

import pyarrow.parquet as pq
import yaml

from prunetune import metrics as M
from prunetune import cli
from prunetune.metrics import FINAL_METRIC_KEYS
from tests.conftest import tiny_config_dict


def tiny_search_yaml(tmp_path, model_dir, dataset, **search) -> str:
    raw = tiny_config_dict(model_dir, dataset, tmp_path / "unused-cache")
    raw["space"] = {"trial.sparsity": {"uniform": [0.2, 0.8]}, "trial.block_size": {"choice": [4, 8]}}
    raw["search"] = {"sampler": "tpe", "num_trials": 2, "max_concurrent": 2, "seed": 0, **search}
    raw["cluster"] = {"cpus_per_trial": 1}
    raw["output"] = {"wandb": {"enabled": False}}
    path = tmp_path / "search.yaml"
    path.write_text(yaml.safe_dump(raw))
    return str(path)


def test_prunetune_search_with_the_real_trial(tmp_path, tiny_model_dir, tiny_dataset_csv, ray_local, capsys):
    config = tiny_search_yaml(tmp_path, tiny_model_dir, tiny_dataset_csv)
    run_dir = tmp_path / "run"
    assert cli.main(["search", config, "--output", str(run_dir), "--no-wandb"]) == 0

    rows = pq.read_table(run_dir / "results.parquet").to_pandas()
    assert len(rows) == 2 and set(rows["status"]) == {"TERMINATED"}, rows[["status", "error"]]
    assert rows[list(FINAL_METRIC_KEYS)].notna().all().all()
    teacher = json.loads((run_dir / "teacher.json").read_text())
    assert teacher["model_dir"].startswith(str(run_dir / "teacher")) and 0 <= teacher["accuracy"] <= 1
    assert (rows["teacher_accuracy"] == teacher["accuracy"]).all()
    for trial_dir in rows["trial_dir"]:
        assert (tmp_path / trial_dir / "result.json").is_file() and (tmp_path / trial_dir / "model").is_dir()
    assert (run_dir / "study.db").is_file() and (run_dir / "pareto.parquet").is_file()
    assert rows[list(M.TIME_SPLIT)].notna().all().all()  # where each trial's time went, start-up included
    # Every trial carries intervals on the evaluation split; the front is evaluated once on the test split.
    assert rows[list(M.headline_interval_keys("classification"))].notna().all().all()
    front = set(pq.read_table(run_dir / "pareto.parquet").to_pandas()["trial_id"])
    tested = rows[rows[M.held_out_key(M.ACCURACY)].notna()]
    assert set(tested["trial_id"]) == front
    assert tested[list(M.held_out_keys("classification"))].notna().all().all()
    for trial_id in front:
        assert (run_dir / "trials" / trial_id / M.EXAMPLE_SCORES_FILE).is_file()
    out = capsys.readouterr().out
    assert "2 trials (0 failed)" in out and "optuna-dashboard sqlite:///" in out
