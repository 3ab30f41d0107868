"""search.measure_on: latency measured in tasks on the nodes that have the named resources."""

from __future__ import annotations

import pytest
import torch

from prunetune import metrics as M
from prunetune.cluster.measure_node import RemoteMeasurer, live_nodes_with, pack_dir, unpack_dir
from prunetune.errors import MeasureNodeError
from tests.models import tiny_classifier
from tests.search.conftest import DEPLOY_RESOURCE


def test_a_directory_travels_as_its_files_and_unpacks_once_by_content(tmp_path):
    source = tmp_path / "trial" / "model"
    (source / "sub").mkdir(parents=True)
    (source / "config.json").write_text("{}")
    (source / "sub" / "weights.bin").write_bytes(b"\x00\x01")
    (tmp_path / "trial" / "result.json").write_text('{"config": {}}')
    files = pack_dir(source, beside=("result.json",))
    assert set(files) == {"config.json", "sub/weights.bin", "../result.json"}
    first = unpack_dir(files)
    assert (first / "sub" / "weights.bin").read_bytes() == b"\x00\x01"
    assert (first.parent / "result.json").read_text() == '{"config": {}}'
    (first / "config.json").write_text("changed here")  # a second unpack of the same files does not rewrite them
    assert unpack_dir(files) == first and (first / "config.json").read_text() == "changed here"
    assert unpack_dir({**files, "config.json": b"[]"}) != first


def _saved_trial(tmp_path):
    from prunetune.trainables.families.compaction import compact_and_verify, save_compacted
    from prunetune.trainables.measure.retime import RetimeRequest

    teacher_dir = tmp_path / "teacher" / "model"
    tiny_classifier(layers=2).save_pretrained(teacher_dir)
    student, _ = compact_and_verify(tiny_classifier(layers=2))
    save_compacted(student, tmp_path / "trial" / "model")
    return RetimeRequest(trial_id="t", model_dir=str(tmp_path / "trial" / "model"), teacher_dir=str(teacher_dir),
                         inference_precision="fp32", device="cpu", batch_size=1, seq_len=8, threads=1,
                         min_run_time=0.05, rounds=2, max_spread=1.0)


def test_a_measurement_runs_on_a_node_with_the_resources_and_says_which(ray_local, tmp_path):
    import ray

    figures = RemoteMeasurer({DEPLOY_RESOURCE: 1}).retime(_saved_trial(tmp_path))
    assert figures[M.LATENCY_NODE] == ray.get_runtime_context().get_node_id()
    assert figures[M.LATENCY_HARDWARE] and "CPUs" in figures[M.LATENCY_HARDWARE]
    assert figures[M.SPEEDUP] == pytest.approx(figures[M.TEACHER_LATENCY_MS] / figures[M.LATENCY_MS])


def test_no_node_with_the_resources_fails_the_measurement_clearly(ray_local, tmp_path):
    assert live_nodes_with({"deploy_gpu": 1}) == []
    with pytest.raises(MeasureNodeError, match=r"search.measure_on = \{resources: \{'deploy_gpu': 1\}\}: no live node"):
        RemoteMeasurer({"deploy_gpu": 1}).retime(_saved_trial(tmp_path))


def test_a_latency_table_is_measured_on_the_deploy_node_and_cached_under_its_name(ray_local, tmp_path):
    from prunetune.trainables.measure.latency_table import cached_table

    model, measurer = tiny_classifier(layers=2), RemoteMeasurer({DEPLOY_RESOURCE: 1})
    arguments = dict(runtime="torch", precision="fp32", device=torch.device("cpu"), batch_size=1, seq_len=8,
                     threads=1)
    table = cached_table(model, tmp_path, measurer=measurer, **arguments)
    assert table.key.device == measurer.describe() and table.layer_ms
    assert cached_table(model, tmp_path, measurer=measurer, **arguments) == table  # cached here now
    with pytest.raises(MeasureNodeError, match="deploy_gpu"):  # other deploy nodes: another table, asked of them
        cached_table(model, tmp_path, measurer=RemoteMeasurer({"deploy_gpu": 1}), **arguments)


def test_measure_on_names_custom_resources_only():
    from prunetune.config import MeasureOnConfig

    with pytest.raises(ValueError, match="search.measure_on.resources.CPU: every node has CPU"):
        MeasureOnConfig(resources={"CPU": 1})
    with pytest.raises(ValueError, match="deploy_cpu = 0.0: expected a positive amount"):
        MeasureOnConfig(resources={"deploy_cpu": 0})


def test_a_rungs_latency_is_the_students_alone(ray_local, tmp_path):
    from dataclasses import replace

    request = replace(_saved_trial(tmp_path), teachers=False, rounds=1)
    figures = RemoteMeasurer({DEPLOY_RESOURCE: 1}).retime(request)
    assert figures[M.LATENCY_MS] > 0 and M.SPEEDUP not in figures and M.TEACHER_LATENCY_MS not in figures


def test_a_trial_with_a_measurer_times_its_rungs_and_its_end_on_the_deploy_node(ray_local, tiny_config, tmp_path):
    import ray

    from prunetune.trainables.trial import run_trial

    reports = []
    metrics = run_trial(tiny_config(report_objectives=True, rung_latency="measured", runtime="openvino",
                                    inference_precision="int8"),
                        output_dir=tmp_path, measurer=RemoteMeasurer({DEPLOY_RESOURCE: 1}),
                        report=lambda values, checkpoint: reports.append(values))
    assert metrics[M.LATENCY_NODE] == ray.get_runtime_context().get_node_id()
    assert M.missing_final_keys(metrics) == []
    rungs = [values for values in reports if not values.get(M.DONE) and M.LATENCY_MS in values]
    assert rungs and all(values[M.LATENCY_MS] > 0 for values in rungs)
