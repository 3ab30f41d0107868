"""One full trial on a tiny random BERT and a tiny dataset made in the test."""

import json

import pytest
import yaml

from prunetune import metrics as M
from prunetune.cli import main
from prunetune.errors import ConfigError, DeviceError, TrialError
from prunetune.trainables.families.compaction import load_compacted
from prunetune.trainables.trial import run_trial


def test_full_trial_reports_every_contract_key(tiny_config, tmp_path):
    reports = []
    metrics = run_trial(tiny_config(), output_dir=tmp_path / "trial", report=lambda m, c: reports.append((m, c and (c / "student.safetensors").is_file())))
    assert M.missing_final_keys(metrics) == []
    assert 0.0 <= metrics[M.ACCURACY] <= 1.0
    assert metrics[M.SPARSITY] == pytest.approx(0.5, abs=0.05)
    assert metrics[M.LATENCY_MS] > 0 and metrics[M.LATENCY_P95_MS] >= metrics[M.LATENCY_MS]
    assert metrics[M.EMISSIONS_KG] > 0 and metrics[M.ENERGY_KWH] > 0
    assert metrics[M.FFN_KEPT] == pytest.approx(0.5, abs=0.05)
    intermediate, final = reports[0], reports[-1]
    assert intermediate[0][M.STEP] == 6 and intermediate[0][M.DONE] is False
    assert intermediate[1] is True  # the checkpoint came with the intermediate report
    assert final[0][M.DONE] is True and final[0] == metrics
    saved = json.loads((tmp_path / "trial" / "result.json").read_text())
    assert saved["metrics"][M.ACCURACY] == metrics[M.ACCURACY]
    assert saved["config"]["trial"]["sparsity"] == 0.5
    model = load_compacted(tmp_path / "trial" / "model")
    assert sum(p.numel() for p in model.parameters()) == metrics[M.PARAMS]


@pytest.mark.parametrize("method", ["movement", "magnitude"])
def test_intermediate_reports_project_the_objectives_of_stopping_there(tiny_config, tmp_path, method):
    reports = []
    final = run_trial(tiny_config(method=method, report_objectives=True), output_dir=tmp_path / "trial",
                      report=lambda m, c: reports.append(m))
    rung = reports[0]
    assert rung[M.STEP] == 6 and rung[M.DONE] is False
    for key in M.RUNG_METRICS:
        assert rung[key] == rung[key], key  # present and not NaN
    assert M.stopped_at(rung) == 6 and M.stopped_at(final) is None
    # The structure it would have at its target sparsity: the final one, up to what training still moves.
    assert rung[M.SPARSITY] == pytest.approx(final[M.SPARSITY], abs=0.05)
    assert rung[M.PARAMS] == pytest.approx(final[M.PARAMS], rel=0.1)
    assert rung[M.ACCURACY_DROP] == pytest.approx(final[M.TEACHER_ACCURACY] - rung[M.ACCURACY])
    assert rung[M.EMISSIONS_KG] > 0 and rung[M.PROJECTION_SECONDS] > 0
    # The student itself was not touched: it trained on and finished as usual.
    assert final[M.STEP] == 12


def test_without_report_objectives_intermediate_reports_stay_small(tiny_config, tmp_path):
    reports = []
    run_trial(tiny_config(), output_dir=tmp_path / "trial", report=lambda m, c: reports.append(m))
    assert M.LATENCY_MS not in reports[0]


def test_a_checkpoint_of_another_configuration_is_never_continued(tiny_config, tmp_path):
    class Stop(Exception):
        pass

    def stop(metrics, checkpoint):
        raise Stop

    with pytest.raises(Stop):
        run_trial(tiny_config(), output_dir=tmp_path, report=stop)  # leaves a checkpoint at step 6
    with pytest.raises(ConfigError, match=r"checkpoint of a trial with another configuration.*--output.*delete"):
        run_trial(tiny_config(sparsity=0.3), output_dir=tmp_path)
    metrics = run_trial(tiny_config(), output_dir=tmp_path)  # the same configuration continues it
    assert metrics[M.STEP] == 12 and not (tmp_path / "checkpoint").exists()  # done: the checkpoint went


def test_nan_loss_fails_the_trial_with_its_reason(tiny_config, tmp_path, monkeypatch):
    import torch

    from prunetune.trainables.training import distill

    monkeypatch.setattr(distill, "distillation_loss", lambda *a, **k: torch.tensor(float("nan"), requires_grad=True))
    with pytest.raises(TrialError, match="loss is nan at step 0"):
        run_trial(tiny_config(), output_dir=tmp_path)


def test_fp16_training_on_cpu_fails_before_loading_anything(tiny_config, tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine can train in fp16")
    with pytest.raises(DeviceError, match="fp16"):
        run_trial(tiny_config(precision="fp16"), output_dir=tmp_path / "never")
    assert not (tmp_path / "never").exists()


def test_int8_trial_measures_the_quantised_model(tiny_config, tmp_path, monkeypatch):
    import torch

    from prunetune.trainables import trial as trial_module

    timed = []
    measure = trial_module.measure_alternating

    def spy(models, **kwargs):
        timed.append(dict(models))
        return measure(models, **kwargs)

    monkeypatch.setattr(trial_module, "measure_alternating", spy)
    metrics = run_trial(tiny_config(inference_precision="int8", method="magnitude", max_steps=6), output_dir=tmp_path)
    assert M.missing_final_keys(metrics) == []
    (pair,) = timed  # the student as served, timed in alternating rounds beside the dense fp32 teacher
    student, teacher = pair["student"], pair["teacher"]
    quantised = torch.ao.nn.quantized.dynamic.Linear
    student_linears = [m for m in student.modules() if isinstance(m, (torch.nn.Linear, quantised))]
    assert student_linears and all(isinstance(m, quantised) for m in student_linears)
    assert not any(isinstance(m, quantised) for m in teacher.modules())
    assert metrics[M.PARAMS] == sum(p.numel() for p in load_compacted(tmp_path / "model").parameters())


def test_cli_trial_writes_result_and_prints_metrics(tiny_config, tmp_path, capsys):
    config_file = tmp_path / "tiny.yaml"
    config_file.write_text(yaml.safe_dump(tiny_config().to_dict()))
    code = main(["trial", str(config_file), "--set", "trial.sparsity=0.25", "--output", str(tmp_path / "out"), "--no-progress"])
    assert code == 0
    result = json.loads((tmp_path / "out" / "result.json").read_text())
    assert result["config"]["trial"]["sparsity"] == 0.25
    printed = capsys.readouterr().out
    assert "accuracy" in printed and "latency_ms" in printed


def test_cli_reports_config_errors_without_a_traceback(tmp_path, capsys):
    code = main(["trial", "quickstart", "--set", "trial.sparsity=2"])
    assert code == 2
    assert "trial.sparsity = 2" in capsys.readouterr().err


def test_every_report_says_where_the_trials_time_went(tiny_config, tmp_path):
    import time

    reports = []
    started = time.perf_counter()
    final = run_trial(tiny_config(report_objectives=True), output_dir=tmp_path / "trial",
                      report=lambda m, c: reports.append(m))
    wall = time.perf_counter() - started
    in_trial = [key for key in M.TIME_SPLIT if key != M.STARTUP_SECONDS]  # the driver measures start-up
    assert all(final[key] > 0 for key in in_trial), {key: final.get(key) for key in in_trial}
    assert sum(final[key] for key in in_trial) <= wall
    rung = reports[0]  # a trial stopped here would have this split in its row
    assert rung[M.RUNG_SECONDS] > 0 and rung[M.TRAIN_SECONDS] <= final[M.TRAIN_SECONDS]
    assert M.FINAL_SECONDS not in rung


def test_a_rung_predicts_its_latency_from_the_table_or_times_a_copy(tiny_config, tmp_path, monkeypatch):
    from prunetune.trainables import trial as trial_module

    served = []
    real_serve = trial_module._Trial._serve
    monkeypatch.setattr(trial_module._Trial, "_serve", lambda self, *a, **k: served.append(1) or real_serve(self, *a, **k))

    def run(rung_latency):
        served.clear()
        reports = []
        final = run_trial(tiny_config(report_objectives=True, rung_latency=rung_latency),
                          output_dir=tmp_path / rung_latency, report=lambda m, c: reports.append(m))
        rungs = [r for r in reports if not r.get(M.DONE)]
        assert rungs and all(r[M.LATENCY_MS] > 0 for r in rungs)
        return final, len(rungs), len(served)

    final, rungs, serves = run("table")
    assert serves == 1  # the end only: the rungs read the table, no copy was served and timed
    assert final[M.TABLE_LATENCY_MS] > 0  # what the rungs ranked on, for the final structure
    # rung_latency: measured serves and times a copy at each rung (test_measure_node times them on a
    # deploy node); here only the table's path runs.


def test_in_a_search_with_rungs_a_trial_reports_at_each_and_evaluates_only_there(tiny_model_dir, tiny_dataset_csv,
                                                                               tmp_path):
    from prunetune.config import scheduler_rungs, validate
    from tests.conftest import tiny_config_dict

    raw = tiny_config_dict(tiny_model_dir, tiny_dataset_csv, tmp_path / "cache", eval_every=4, report_objectives=True)
    raw["search"] = {"scheduler": "moasha", "grace_steps": 2, "reduction_factor": 3}
    config = validate(raw, check_model=True)
    assert scheduler_rungs(config) == [2, 6]  # not multiples of trial.eval_every: they need not be
    reports = []
    run_trial(config, output_dir=tmp_path / "trial", report=lambda m, c: reports.append((m, c is not None)))
    intermediate = {m[M.STEP]: (m, checkpointed) for m, checkpointed in reports[:-1]}
    assert sorted(intermediate) == [2, 4, 6, 8]  # the rungs and every eval_every steps; 12 is the end
    for step in (2, 6):  # ranked: evaluated, with the objectives of stopping there and how sure its figure is
        assert M.ACCURACY in intermediate[step][0] and M.LATENCY_MS in intermediate[step][0]
        low, high = (intermediate[step][0][key] for key in M.interval_keys(M.ACCURACY))
        assert low <= intermediate[step][0][M.ACCURACY] <= high
    for step in (4, 8):  # between rungs: a checkpoint and the loss, no evaluation
        assert M.ACCURACY not in intermediate[step][0] and M.TRAIN_LOSS in intermediate[step][0]
    assert all(checkpointed for _, checkpointed in intermediate.values())
