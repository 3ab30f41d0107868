"""A search that survives: a killed worker, a lost results row, a second search, secrets, its disk."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path
from types import SimpleNamespace

import optuna
import pytest

from prunetune.cluster import RunDir
from prunetune.errors import ConfigError
from prunetune.names import RESULTS_FILE, TERMINATED
from prunetune.search import _optuna, resume_search, run_search
from prunetune.search._results import ResultsCallback, read_rows, write_results
from prunetune.search.synthetic import (
    KILLED_FILE,
    STARTS_FILE,
    SyntheticTrial,
    synthetic_teacher,
)
from tests.search.conftest import synthetic_config

REPO = Path(__file__).resolve().parents[2]


def test_a_killed_worker_is_retried_from_its_checkpoint(tmp_path, ray_local):
    config = synthetic_config(sampler="random", num_trials=2, max_concurrent=1, reuse_actors=False)
    outcome = run_search(config, run_dir=tmp_path / "run", trial_fn=SyntheticTrial(steps=4, kill_at_step=2),
                         teacher_fn=synthetic_teacher)
    rows = read_rows(tmp_path / "run" / RESULTS_FILE)
    assert [row["status"] for row in rows] == [TERMINATED, TERMINATED] and outcome.num_failed == 0
    for trial in (tmp_path / "run" / "trials").iterdir():
        assert (trial / KILLED_FILE).is_file()
        assert (trial / STARTS_FILE).read_text().split() == ["0", "2"]  # resumed at its last checkpoint
    study = optuna.load_study(study_name="prunetune", storage=f"sqlite:///{tmp_path / 'run' / 'study.db'}")
    assert not any(t.user_attrs.get("failed") for t in study.trials)  # never told as infeasible


def test_a_trial_out_of_retries_is_finished_by_resume_and_joins_the_study(tmp_path, ray_local):
    config = synthetic_config(sampler="random", num_trials=2, max_concurrent=1, reuse_actors=False, max_retries=0)
    trial = SyntheticTrial(steps=4, kill_at_step=2)  # each trial's worker dies once
    outcome = run_search(config, run_dir=tmp_path / "run", trial_fn=trial, teacher_fn=synthetic_teacher)
    assert [row["status"] for row in read_rows(tmp_path / "run" / RESULTS_FILE)] == ["ERROR", "ERROR"]
    assert outcome.num_failed == 2

    outcome = resume_search(tmp_path / "run", trial_fn=trial, teacher_fn=synthetic_teacher)

    rows = read_rows(tmp_path / "run" / RESULTS_FILE)
    assert [row["status"] for row in rows] == [TERMINATED, TERMINATED] and outcome.num_failed == 0
    study = optuna.load_study(study_name="prunetune", storage=f"sqlite:///{tmp_path / 'run' / 'study.db'}")
    told = {t.user_attrs["tune_trial_id"]: t for t in study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))}
    assert sorted(told) == sorted(row["trial_id"] for row in rows)  # each outcome reached the sampler
    for row in rows:
        assert told[row["trial_id"]].values[0] == pytest.approx(row["accuracy"])
        assert "resumed_from_trial" in told[row["trial_id"]].user_attrs


def test_a_finished_trial_keeps_its_model_and_result_only(tmp_path, ray_local):
    config = synthetic_config(sampler="random", num_trials=2)
    run_search(config, run_dir=tmp_path / "run", trial_fn=SyntheticTrial(steps=3), teacher_fn=synthetic_teacher)
    for trial in (tmp_path / "run" / "trials").iterdir():
        assert sorted(p.name for p in trial.iterdir()) == ["model", "result.json", STARTS_FILE]
    assert not list((tmp_path / "run" / "tune").glob("*/checkpoint_*"))  # Tune's copies went too


def test_a_row_lost_with_the_driver_comes_back_on_resume(tmp_path, ray_local):
    config = synthetic_config(sampler="random", num_trials=3)
    run_search(config, run_dir=tmp_path / "run", trial_fn=SyntheticTrial(), teacher_fn=synthetic_teacher)
    path = tmp_path / "run" / RESULTS_FILE
    rows = read_rows(path)
    write_results(rows[1:], path)  # the driver died after Tune saved the trial as ended, before its row
    resume_search(tmp_path / "run", trial_fn=SyntheticTrial(), teacher_fn=synthetic_teacher)
    again = read_rows(path)
    assert sorted(r["trial_id"] for r in again) == sorted(r["trial_id"] for r in rows)
    (restored,) = [r for r in again if r["trial_id"] == rows[0]["trial_id"]]
    assert restored["status"] == TERMINATED and restored["accuracy"] == pytest.approx(rows[0]["accuracy"])


def test_a_second_search_in_the_same_run_directory_is_refused(tmp_path):
    run = tmp_path / "run"
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import time
        from prunetune.cluster import RunDir
        with RunDir({str(run)!r}).lock():
            print("held", flush=True)
            time.sleep(30)
    """)], cwd=REPO, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(ConfigError, match=rf"in use by another search \(process {holder.pid} on host"):
            with RunDir(run).lock():
                pass
    finally:
        holder.kill()
        holder.wait()
    with RunDir(run).lock():  # a holder that was killed lets go
        pass


def test_a_study_of_another_run_directory_is_refused_before_the_teacher(tmp_path, ray_local):
    storage = f"sqlite:///{tmp_path / 'shared.db'}"
    config = synthetic_config(sampler="random", num_trials=1, storage=storage)
    run_search(config, run_dir=tmp_path / "first", trial_fn=SyntheticTrial(), teacher_fn=synthetic_teacher)

    def teacher_that_must_not_run(*args, **kwargs):
        raise AssertionError("the teacher was prepared for a search that cannot run")

    with pytest.raises(ConfigError, match=r"belongs to the search in .*first"):
        run_search(config, run_dir=tmp_path / "second", trial_fn=SyntheticTrial(), teacher_fn=teacher_that_must_not_run)


def test_no_password_is_written_or_printed(tmp_path, ray_local, monkeypatch, capsys):
    secret = "s3cret-pw-123"
    database = tmp_path / "study.db"
    real = _optuna.make_storage
    monkeypatch.setattr(_optuna, "make_storage", lambda url: real(f"sqlite:///{database}"))  # stands for PostgreSQL
    url = f"postgresql://prunetune:{secret}@db.example.org/studies"
    config = synthetic_config(sampler="random", num_trials=2, storage=url, verbosity=1)
    outcome = run_search(config, run_dir=tmp_path / "run", trial_fn=SyntheticTrial(), teacher_fn=synthetic_teacher)
    assert secret not in outcome.storage_url and "***" in outcome.storage_url
    for path in (tmp_path / "run").rglob("*"):
        if path.is_file():
            assert secret.encode() not in path.read_bytes(), path
    assert secret not in capsys.readouterr().out
    with pytest.raises(ConfigError, match="PRUNETUNE_STORAGE"):
        resume_search(tmp_path / "run", trial_fn=SyntheticTrial(), teacher_fn=synthetic_teacher)
    monkeypatch.setenv("PRUNETUNE_STORAGE", url)
    resume_search(tmp_path / "run", trial_fn=SyntheticTrial(), teacher_fn=synthetic_teacher)


def test_a_trial_with_an_invalid_configuration_does_not_stop_the_results(tmp_path):
    config = synthetic_config()
    callback = ResultsCallback(RunDir(tmp_path), config)
    callback.setup()
    trial = SimpleNamespace(trial_id="bad", config={"trial.sparsity": 7.0}, last_result={"failed": True,
                            "error": "ConfigError: trial.sparsity = 7.0"}, run_metadata=SimpleNamespace(start_time=1.0))
    callback.on_trial_complete(0, [], trial)
    (row,) = read_rows(tmp_path / RESULTS_FILE)
    assert row["status"] == "ERROR" and row["trial.sparsity"] == 7.0 and "ConfigError" in row["error"]
    assert json.dumps(row, default=str)  # a complete row


def test_a_configuration_failure_keeps_its_whole_reason():
    from prunetune.trainables.trainable import failure_report

    error = ConfigError(["trial.sparsity = 0.97: above the space's 0.9", "trial.max_steps = 5: below trial.eval_every"])
    reason = failure_report(error)["error"]
    assert reason.startswith("ConfigError: 2 configuration problems:")
    assert "trial.sparsity = 0.97: above the space's 0.9" in reason and "trial.max_steps = 5" in reason


@pytest.fixture
def small_disk(tmp_path):
    """A 3 MB file system of the test's own (tmpfs), or a skip where mounting one is not allowed."""
    mount = tmp_path / "small"
    mount.mkdir()
    made = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(mount)], capture_output=True)
    if made.returncode != 0:
        pytest.skip(f"cannot mount a small file system here: {made.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_a_full_run_directory_stops_clearly_and_resumes_once_freed(small_disk, ray_local):
    from prunetune.errors import RunDirFullError

    run = small_disk / "run"
    config = synthetic_config(sampler="random", num_trials=8, max_concurrent=1)
    trial = SyntheticTrial(model_bytes=600_000)  # five models fill 3 MB
    with pytest.raises(RunDirFullError, match=r"file system is full .*`prunetune search --resume"):
        run_search(config, run_dir=run, trial_fn=trial, teacher_fn=synthetic_teacher)
    finished = [row for row in read_rows(run / RESULTS_FILE) if row["status"] == TERMINATED]
    assert 1 <= len(finished) < 8  # what finished is readable ...
    study = optuna.load_study(study_name="prunetune", storage=f"sqlite:///{run / 'study.db'}")
    assert len([t for t in study.trials if t.state.is_finished()]) >= len(finished)  # ... and so is the study
    subprocess.run(["mount", "-o", "remount,size=64m", str(small_disk)], check=True)  # space freed
    outcome = resume_search(run, trial_fn=trial, teacher_fn=synthetic_teacher)
    rows = read_rows(run / RESULTS_FILE)
    assert len(rows) == 8 and all(row["status"] == TERMINATED for row in rows) and outcome.num_failed == 0
