"""Run directories: local paths, and object-store URIs through pyarrow (``file://`` stands in for s3/gs)."""

from __future__ import annotations

import pyarrow.parquet as pq
import pytest

from prunetune.cluster import RunDir, address_problem
from prunetune.search import run_search
from prunetune.search.synthetic import SyntheticTrial, synthetic_teacher
from tests.search.conftest import synthetic_config


def test_local_run_dir(tmp_path):
    run = RunDir(tmp_path / "run")
    assert not run.is_remote and run.local == tmp_path / "run"
    assert run.trial_location("abc") == str(tmp_path / "run" / "trials" / "abc")
    assert run.study_url == f"sqlite:///{tmp_path / 'run' / 'study.db'}"


def test_uri_push_pull_and_finished_results(tmp_path):
    remote = tmp_path / "bucket" / "run"
    run = RunDir(f"file://{remote}", mirror=tmp_path / "mirror")
    assert run.is_remote and run.trial_location("t1") == f"file://{remote}/trials/t1"
    out = run.trial_output_dir("t1")
    (out / "result.json").write_text('{"metrics": {"accuracy": 0.9}, "config": {}}')
    (out / "model").mkdir()
    (out / "model" / "weights.bin").write_bytes(b"123")
    run.publish_trial("t1")
    assert (remote / "trials" / "t1" / "model" / "weights.bin").read_bytes() == b"123"

    elsewhere = RunDir(f"file://{remote}", mirror=tmp_path / "other-node")
    assert elsewhere.finished_result("t1") == {"accuracy": 0.9}
    assert elsewhere.finished_result("t2") is None
    assert not elsewhere.pull("teacher")


def test_default_mirror_is_per_node_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("PRUNETUNE_CACHE", str(tmp_path / "cache"))
    run = RunDir("s3://bucket/runs/x")
    assert run.local.parent == tmp_path / "cache" / "runs"


@pytest.mark.parametrize("address", ["auto", "127.0.0.1:6379", "ray://head:10001", "local", None])
def test_addresses(address):
    assert address_problem(address) is None


@pytest.mark.parametrize("address", ["http://head:8265", "head", "ray://head"])
def test_bad_addresses(address):
    assert "expected auto, HOST:PORT or ray://HOST:PORT" in address_problem(address)


def test_search_into_an_object_store_uri(tmp_path, ray_local):
    remote = tmp_path / "bucket" / "run"
    run = RunDir(f"file://{remote}", mirror=tmp_path / "mirror")
    config = synthetic_config(sampler="random", num_trials=3)
    outcome = run_search(config, run_dir=run, trial_fn=SyntheticTrial(), teacher_fn=synthetic_teacher)
    assert outcome.num_trials == 3
    for name in ("config.yaml", "study.db", "results.parquet", "teacher.json", "teacher", "tune/tuner.pkl"):
        assert (remote / name).exists(), name
    rows = pq.read_table(remote / "results.parquet").to_pandas()
    for _, row in rows.iterrows():
        assert row["trial_dir"] == f"file://{remote}/trials/{row['trial_id']}"
        assert (remote / "trials" / row["trial_id"] / "result.json").is_file()
        assert (remote / "trials" / row["trial_id"] / "model").is_dir()
