"""results.parquet: the schema, and a write that fails half way never costs the table already there."""

import pyarrow.parquet as pq
import pytest

from prunetune.metrics import FINAL_METRIC_KEYS, TEACHER_KEYS
from prunetune.names import TERMINATED
from prunetune.search import _results
from prunetune.search._results import (
    read_rows,
    results_schema,
    trial_row,
    write_results,
)
from prunetune.trainables.methods import method_metrics


def row(trial_id: str) -> dict:
    return {"trial_id": trial_id, "status": TERMINATED, "trial.sparsity": 0.5, "accuracy": 0.9}


def test_a_write_that_dies_half_way_leaves_the_last_complete_table(tmp_path, monkeypatch):
    path = tmp_path / "results.parquet"
    write_results([row("a")], path)

    def die_half_way(table, where, **kwargs):
        with open(where, "wb") as handle:  # a partial file, then the process dies
            handle.write(b"PAR1 half a table")
        raise OSError("disk full")

    monkeypatch.setattr(_results.pq, "write_table", die_half_way)
    with pytest.raises(OSError, match="disk full"):
        write_results([row("a"), row("b")], path)
    assert [r["trial_id"] for r in read_rows(path)] == ["a"]


def test_the_schema_holds_the_contract_the_teacher_and_the_methods_metrics():
    names = results_schema().names
    for key in (*FINAL_METRIC_KEYS, *TEACHER_KEYS, *method_metrics(), "fill_seconds", "trial.group_lasso.penalty"):
        assert key in names, key


def test_a_methods_extra_metric_reaches_the_table(tmp_path):
    path = tmp_path / "results.parquet"
    final = {"accuracy": 0.9, "prune_seconds": 1.5}  # a test_time trial's final report
    written = trial_row(trial_id="t", status=TERMINATED, trial={"trial.method": "test_time"}, result=final,
                        started_at=0.0, finished_at=1.0, trial_dir="trials/t")
    write_results([written], path)
    assert pq.read_table(path).to_pylist()[0]["prune_seconds"] == 1.5


def test_a_row_records_the_settings_the_worker_validated_and_ran_with():
    from prunetune.names import TRIAL_SETTINGS
    from prunetune.search._results import trial_values
    from tests.search.conftest import synthetic_config

    base = synthetic_config()
    assert base.trial.latency.threads is None  # the worker fills it with the CPUs Tune gave the trial
    ran = base.with_trial_values({"trial.sparsity": 0.3, "trial.latency.threads": 1})
    from prunetune.trainables.trainable import validated_settings

    values = trial_values(base, {"trial.sparsity": 0.3}, {TRIAL_SETTINGS: validated_settings(ran)})
    assert values["trial.latency.threads"] == 1 and values["trial.sparsity"] == 0.3
    # A point that failed validation has no validated settings: the row shows what was sampled.
    failed = trial_values(base, {"trial.sparsity": 7.0}, {"error": "ConfigError: ..."})
    assert failed["trial.sparsity"] == 7.0 and failed["trial.latency.threads"] is None


def test_a_searchs_rows_hold_the_threads_its_workers_used(tmp_path, ray_local):
    from prunetune.search import run_search
    from prunetune.search.synthetic import SyntheticTrial, synthetic_teacher
    from tests.search.conftest import synthetic_config

    run_search(synthetic_config(num_trials=2), run_dir=tmp_path / "run", trial_fn=SyntheticTrial(),
               teacher_fn=synthetic_teacher)
    assert {r["trial.latency.threads"] for r in read_rows(tmp_path / "run" / "results.parquet")} == {1}
