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
