"""W&B: per-trial runs, the summary run and its tables, read back from the offline run files."""

from __future__ import annotations

import io
from types import SimpleNamespace

import pytest
from rich.console import Console

from prunetune import metrics as M
from prunetune.analysis import analyse, load_run, summarize_run, wandb_settings
from prunetune.analysis import runs as R
from prunetune.analysis.wandb_settings import sync_command
from prunetune.errors import ConfigError
from tests.analysis import synthetic as S
from tests.analysis.wandb_records import offline_runs

FAKE_KEY = "fakekey0123456789abcdef0123456789abcdef0"


@pytest.mark.parametrize(
    ("section", "enabled", "env", "mode"),
    [
        ({}, True, {}, "offline"),
        ({}, True, {"WANDB_API_KEY": FAKE_KEY}, "online"),
        ({"mode": "offline"}, True, {"WANDB_API_KEY": FAKE_KEY}, "offline"),
        ({"mode": "auto"}, True, {"WANDB_MODE": "offline", "WANDB_API_KEY": FAKE_KEY}, "offline"),
        ({"mode": "online"}, False, {}, "disabled"),
        ({"enabled": False}, True, {"WANDB_API_KEY": FAKE_KEY}, "disabled"),
        ({"mode": "disabled"}, True, {}, "disabled"),
        ({}, True, {"WANDB_MODE": "disabled"}, "disabled"),
    ],
)
def test_mode_rule(tmp_path, section, enabled, env, mode):
    settings = wandb_settings({"output": {"wandb": section}}, tmp_path / "my-search", enabled=enabled, environ=env)
    assert settings.mode == mode
    assert settings.group == "my-search" and settings.project == "prunetune"


def test_bad_mode_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="output.wandb.mode = 'sometimes'"):
        wandb_settings({"output": {"wandb": {"mode": "sometimes"}}}, tmp_path)


def test_summary_run_holds_the_tables_and_charts(run_dir):
    out = io.StringIO()
    summary = summarize_run(run_dir, console=Console(file=out, width=200))
    printed = out.getvalue()
    assert sync_command(run_dir.resolve()) in printed and "offline run(s)" in printed
    (wb,) = offline_runs(run_dir)
    assert summary.wandb_record.local_dir == wb.dir
    assert wb.run.run_group == run_dir.name and wb.run.job_type == "summary" and wb.run.project == "prunetune-test"
    assert wb.run.display_name == run_dir.name  # the summary is named after its run directory

    analysis = analyse(load_run(run_dir))
    pareto = wb.table("pareto")
    ids = pareto["columns"].index(R.TRIAL_ID)
    assert sorted(row[ids] for row in pareto["data"]) == sorted(analysis.front[R.TRIAL_ID])
    assert {M.ACCURACY, M.LATENCY_MS, M.EMISSIONS_KG, "trial.sparsity", "knee"} <= set(pareto["columns"])
    results = wb.table("results")
    assert len(results["data"]) == 25  # every trial, the errored one too
    status = results["columns"].index(R.STATUS)
    assert sorted({row[status] for row in results["data"]}) == [R.ERRORED, R.TERMINATED]

    charts = {k.split(".", 2)[2] for k in wb.config if k.startswith("_wandb.visualize.")}
    assert charts == {"scatter/accuracy_vs_latency_ms", "scatter/accuracy_vs_emissions_kg",
                      "scatter/emissions_kg_vs_latency_ms"}
    scatter = wb.table("scatter/accuracy_vs_latency_ms_table")
    assert len(scatter["data"]) == 24
    last = wb.history[-1]
    assert last["parallel_coordinates"]["_type"] == "plotly-file" and last["front_3d"]["_type"] == "plotly-file"
    assert last["plots/accuracy_vs_latency_ms"]["_type"] == "image-file"
    hypervolume = [row["hypervolume"] for row in wb.history if "hypervolume" in row]
    assert len(hypervolume) == 24 and hypervolume[-1] == pytest.approx(analysis.hypervolume)
    assert wb.summary["knee_trial"] == analysis.knee_id and wb.summary["front_size"] == len(analysis.front)


def test_no_wandb_writes_no_runs(run_dir):
    summary = summarize_run(run_dir, wandb=False, console=Console(file=io.StringIO()))
    assert summary.wandb_record is None and not (run_dir / "wandb").exists()
    assert (run_dir / R.PARETO_FILE).is_file()


def test_the_api_key_is_never_written(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_API_KEY", FAKE_KEY)
    config = S.run_config(wandb={"enabled": True, "project": "p", "mode": "offline"})
    directory = tmp_path / "secret"
    S.write_run(directory, S.realistic_rows(directory, n=6), config)
    summarize_run(directory, console=Console(file=io.StringIO()))
    written = [p for p in directory.rglob("*") if p.is_file()]
    assert any(p.suffix == ".wandb" for p in written) and any(p.suffix == ".parquet" for p in written)
    assert [p for p in written if FAKE_KEY.encode() in p.read_bytes()] == []


# --------------------------------------------------------------------------- per-trial runs


def _trial(trial_id: str, **config) -> SimpleNamespace:
    return SimpleNamespace(trial_id=trial_id, config={"trial": config}, last_result={}, error_message=None)


def test_trial_callback_logs_one_run_per_trial(tmp_path):
    from prunetune.search.wandb_callback import WandbTrialCallback, wandb_callbacks

    config = S.run_config()
    (callback,) = wandb_callbacks(config, tmp_path / "search-c")
    assert isinstance(callback, WandbTrialCallback)
    good, bad = _trial("c_00000", sparsity=0.7), _trial("c_00001", sparsity=0.2)
    callback.on_trial_start(0, [], good)
    callback.on_trial_start(0, [], bad)
    for step in (1, 2):
        callback.on_trial_result(0, [], good, {"training_iteration": step, M.STEP: 10 * step,
                                              M.TRAIN_LOSS: 1.0 / step, M.CURRENT_SPARSITY: 0.35 * step,
                                              "time_this_iter_s": 3.0, "config": {"trial": {}}})
    final = S.trial_row("c_00000", accuracy=0.9, latency_ms=5.0, emissions_kg=1e-5, sparsity=0.7)
    good.last_result = {"training_iteration": 3, M.DONE: True, **{k: final[k] for k in M.FINAL_METRIC_KEYS}}
    callback.on_trial_result(0, [], good, good.last_result)
    callback.on_trial_complete(0, [], good)
    bad.error_message = "Traceback ...\nTrialError: loss diverged"
    callback.on_trial_error(0, [], bad)
    stopped = _trial("c_00002", sparsity=0.9)  # stopped early at its rung: its curve, and why it ends there
    callback.on_trial_start(0, [], stopped)
    stopped.last_result = {"training_iteration": 1, M.STEP: 10, M.ACCURACY: 0.4, M.LATENCY_MS: 2.0, M.DONE: True}
    callback.on_trial_result(0, [], stopped, stopped.last_result)
    callback.on_trial_complete(0, [], stopped)
    callback.on_experiment_end([])

    runs = {wb.run.display_name: wb for wb in offline_runs(tmp_path / "search-c")}
    assert set(runs) == {"c_00000", "c_00001", "c_00002"}
    assert runs["c_00002"].summary["status"] == "STOPPED" and runs["c_00002"].summary[M.STOPPED_AT_STEP] == 10
    assert [row[M.ACCURACY] for row in runs["c_00002"].history if M.ACCURACY in row] == [0.4]
    wb = runs["c_00000"]
    assert wb.run.run_group == "search-c" and wb.run.job_type == "trial"
    assert wb.config["trial.sparsity"] == 0.7 and wb.config["trial.block_size"] == 32  # searched + fixed keys
    curves = [row for row in wb.history if M.TRAIN_LOSS in row]
    assert [row[M.TRAIN_LOSS] for row in curves] == [1.0, 0.5] and [row["_step"] for row in curves] == [1, 2]
    assert all("time_this_iter_s" not in row for row in wb.history)
    assert wb.summary[M.ACCURACY] == 0.9 and wb.summary["status"] == "TERMINATED"
    assert runs["c_00001"].summary["status"] == "ERROR"
    assert runs["c_00001"].summary[M.ERROR] == "TrialError: loss diverged"


def test_trial_callbacks_are_off_when_wandb_is(tmp_path):
    from prunetune.search.wandb_callback import wandb_callbacks

    assert wandb_callbacks(S.run_config(), tmp_path, enabled=False) == []
    assert wandb_callbacks(S.run_config(wandb={"enabled": False}), tmp_path) == []
    assert wandb_callbacks(S.run_config(wandb={"mode": "disabled"}), tmp_path) == []


def test_trial_callback_pickles_without_live_runs(tmp_path):
    import pickle

    from prunetune.search.wandb_callback import wandb_callbacks

    (callback,) = wandb_callbacks(S.run_config(), tmp_path / "p")
    callback._runs["x"] = object()  # stands for a live wandb run
    restored = pickle.loads(pickle.dumps(callback))
    assert restored._runs == {} and restored.settings == callback.settings
    assert restored.settings.run_dir == (tmp_path / "p").resolve()  # the run directory survives the round trip
    assert restored.settings.group == "p"
