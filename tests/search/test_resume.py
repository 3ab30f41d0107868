"""Kill the driver mid-search, resume it: finished trials stay finished, running ones resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import optuna
import psutil
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from ray.tune import Callback

from prunetune.search import resume_search
from prunetune.search.synthetic import STARTS_FILE, SyntheticTrial, synthetic_teacher

REPO = Path(__file__).resolve().parents[2]
TRIAL = SyntheticTrial(steps=4, seconds_per_step=1.0)

DRIVER = textwrap.dedent("""
    import json, sys
    from prunetune.search import run_search
    from prunetune.search.synthetic import SyntheticTrial, synthetic_teacher
    from tests.search.conftest import synthetic_config

    search = {"sampler": "tpe", "max_concurrent": 2, "reuse_actors": False,
              **json.loads(sys.argv[2])}
    config = synthetic_config(trial=search.pop("trial", None), **search)
    run_search(config, run_dir=sys.argv[1], trial_fn=SyntheticTrial(steps=4, seconds_per_step=1.0),
               teacher_fn=synthetic_teacher)
""")
#: The driver's search settings per case: no scheduler, and MO-ASHA stopping some trials early. Each
#: runs enough trials that some still run when a finished, a stopped and a checkpointed one are seen
#: (MO-ASHA ends most trials at their first rungs, one second in: it needs twice as many).
CASES = {"fifo": {"num_trials": 8},
         "moasha": {"num_trials": 16, "scheduler": "moasha", "sampler": "random", "grace_steps": 1,
                    "reduction_factor": 2, "trial": {"eval_every": 1}}}  # a report every step: rungs at 1, 2, 4, 8


def finished_ids(run_dir: Path) -> list[str]:
    return _results(run_dir)["trial_id"]


def _results(run_dir: Path) -> dict[str, list]:
    """results.parquet's columns, read in one go (the file is replaced while the search runs)."""
    path = run_dir / "results.parquet"
    if not path.is_file():
        return {"trial_id": [], "status": []}
    return pq.read_table(pa.BufferReader(path.read_bytes())).to_pydict()


def checkpointed_unfinished(run_dir: Path) -> list[str]:
    """Trials with no result yet whose checkpoint Tune holds (the copy a resume gives back)."""
    ids, ended = [], {*statuses(run_dir), *stopped_by_scheduler(run_dir)}
    for trial in (run_dir / "trials").glob("*"):
        held = list((run_dir / "tune" / trial.name).glob("checkpoint_*/state.json"))
        if trial.name not in ended and not (trial / "result.json").exists() and any(_step(p) >= 1 for p in held):
            ids.append(trial.name)
    return ids


def stopped_by_scheduler(run_dir: Path) -> set[str]:
    """Trials the scheduler has decided to stop (their rows may not be written yet)."""
    from prunetune.search.rungs import RungLadder

    try:
        return set(RungLadder.from_json((run_dir / "scheduler.json").read_text()).stopped())
    except (OSError, ValueError):  # no scheduler, or the file is being replaced
        return set()


def _step(state: Path) -> int:
    try:
        return int(json.loads(state.read_text())["step"])
    except (OSError, ValueError, KeyError):  # being written (or removed) right now
        return 0


def kill_tree(process: subprocess.Popen) -> None:
    """SIGKILL the driver and every process it started (its in-process Ray), by process id."""
    parent = psutil.Process(process.pid)
    family = [parent, *parent.children(recursive=True)]
    for member in family:
        try:
            member.send_signal(signal.SIGKILL)
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(family, timeout=30)


def statuses(run_dir: Path) -> dict[str, str]:
    table = _results(run_dir)
    return dict(zip(table["trial_id"], table["status"]))


@pytest.fixture(params=list(CASES))
def killed_search(tmp_path, request):
    run_dir = tmp_path / "run"
    script = tmp_path / "driver.py"
    script.write_text(DRIVER)
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen([sys.executable, str(script), str(run_dir), json.dumps(CASES[request.param])],
                               cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and process.poll() is None:
            stopped_yet = request.param == "fifo" or "STOPPED" in statuses(run_dir).values()
            if len(finished_ids(run_dir)) >= 2 and stopped_yet and checkpointed_unfinished(run_dir):
                break
            time.sleep(0.2)
        assert process.poll() is None, "the search ended before it could be killed"
        assert len(finished_ids(run_dir)) >= 2, "no two trials finished in time"
        time.sleep(1.2)  # let the running trials' checkpoints settle in Tune's folders
    finally:
        if process.poll() is None:
            kill_tree(process)
    return run_dir, finished_ids(run_dir), CASES[request.param]["num_trials"]


def test_resume_after_the_driver_was_killed(killed_search, ray_local):
    run_dir, finished_before, num_trials = killed_search
    assert 2 <= len(finished_before) < num_trials

    stopped_before = {trial for trial, status in statuses(run_dir).items() if status == "STOPPED"}
    ladder_before = _ladder(run_dir)

    outcome = resume_search(run_dir, trial_fn=TRIAL, teacher_fn=synthetic_teacher)

    ids = finished_ids(run_dir)
    assert len(ids) == len(set(ids)) == num_trials == outcome.num_trials
    assert ids[: len(finished_before)] == finished_before  # rows written before the kill are kept
    starts = {trial: (run_dir / "trials" / trial / STARTS_FILE).read_text().split() for trial in ids}
    for trial in finished_before:
        assert starts[trial] == ["0"], f"finished trial {trial} ran again: {starts[trial]}"
    resumed = [trial for trial, steps in starts.items() if len(steps) > 1]
    # Running trials start again: from their checkpoint where Tune held one, from step 0 otherwise.
    assert any(int(starts[t][-1]) >= 1 for t in resumed), starts
    for trial in resumed:
        if not (run_dir / "trials" / trial / "result.json").exists():
            assert statuses(run_dir)[trial] == "STOPPED"  # resumed, then stopped at a later rung: no result
            continue
        result = json.loads((run_dir / "trials" / trial / "result.json").read_text())
        assert result["metrics"]["resumed_from_step"] == int(starts[trial][-1])  # its last start made the result

    study = optuna.load_study(study_name="prunetune", storage=f"sqlite:///{run_dir / 'study.db'}")
    complete = study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))
    assert sorted(t.user_attrs["tune_trial_id"] for t in complete if "duplicate_of" not in t.user_attrs) == sorted(ids)
    assert not study.get_trials(states=(optuna.trial.TrialState.RUNNING,))

    # Trials stopped early stay stopped; the rungs keep what they recorded before the kill.
    after = statuses(run_dir)
    assert all(after[trial] == "STOPPED" for trial in stopped_before)
    assert outcome.num_stopped == sum(status == "STOPPED" for status in after.values())
    if ladder_before is not None:
        assert stopped_before, "the search was killed before the scheduler stopped a trial"
        ladder_after = _ladder(run_dir)
        for rung, records in ladder_before["records"].items():
            assert records.items() <= ladder_after["records"][rung].items()
        assert stopped_before <= set(ladder_after["stopped"])


def _ladder(run_dir: Path) -> dict | None:
    from prunetune.search.rungs import RungLadder

    path = run_dir / "scheduler.json"
    if not path.is_file():
        return None
    ladder = RungLadder.from_json(path.read_text())
    return {"records": json.loads(ladder.to_json())["records"], "stopped": ladder.stopped()}


def test_resume_needs_a_search(tmp_path):
    from prunetune.errors import ConfigError

    with pytest.raises(ConfigError, match="not the run directory of a search"):
        resume_search(tmp_path)


def test_a_moved_run_directory_resumes_with_its_own_study(tmp_path, ray_local):
    import shutil

    from prunetune.search import run_search
    from tests.search.conftest import synthetic_config

    config = synthetic_config(sampler="tpe", num_trials=2, max_concurrent=1)
    run_search(config, run_dir=tmp_path / "before", trial_fn=SyntheticTrial(), teacher_fn=synthetic_teacher)
    shutil.move(tmp_path / "before", tmp_path / "after")  # the old path, and its study.db, are gone

    outcome = resume_search(tmp_path / "after", trial_fn=SyntheticTrial(), teacher_fn=synthetic_teacher)
    assert outcome.num_trials == 2 and not (tmp_path / "before").exists()
    assert outcome.storage_url == f"sqlite:///{tmp_path / 'after' / 'study.db'}"


def test_another_storage_url(tmp_path, ray_local):
    from prunetune.search import run_search
    from tests.search.conftest import synthetic_config

    url = f"sqlite:///{tmp_path / 'shared.db'}"
    config = synthetic_config(sampler="random", num_trials=2, storage=url, study_name="mine")
    run_search(config, run_dir=tmp_path / "run", trial_fn=SyntheticTrial(), teacher_fn=synthetic_teacher)
    assert not (tmp_path / "run" / "study.db").exists()
    assert len(optuna.load_study(study_name="mine", storage=url).trials) == 2


class StopAfter(Callback):
    """Interrupts the driver (Ctrl-C) once ``count`` trials have ended."""

    def __init__(self, count: int):
        self.count, self.ended = count, 0

    def on_trial_complete(self, iteration: int, trials: list, trial, **info) -> None:
        self.ended += 1
        if self.ended == self.count:
            os.kill(os.getpid(), signal.SIGINT)


def drawn(run_dir: Path) -> list[dict]:
    """The configurations the search's sampler drew, in order (clones told from their twin left out)."""
    study = optuna.load_study(study_name="prunetune", storage=f"sqlite:///{run_dir / 'study.db'}")
    return [t.params for t in study.trials if "tune_trial_id" in t.user_attrs and "duplicate_of" not in t.user_attrs]


def test_a_resumed_search_draws_the_configurations_of_an_uninterrupted_one(tmp_path, ray_local):
    from prunetune.search import run_search
    from tests.search.conftest import synthetic_config

    config = synthetic_config(sampler="tpe", num_trials=6, max_concurrent=1, n_startup_trials=2)
    run_search(config, run_dir=tmp_path / "whole", trial_fn=SyntheticTrial(), teacher_fn=synthetic_teacher)
    run_search(config, run_dir=tmp_path / "stopped", trial_fn=SyntheticTrial(), teacher_fn=synthetic_teacher,
               callbacks=[StopAfter(3)])
    assert 3 <= len(drawn(tmp_path / "stopped")) < 6

    outcome = resume_search(tmp_path / "stopped", trial_fn=SyntheticTrial(), teacher_fn=synthetic_teacher)

    assert outcome.num_trials == 6 and outcome.num_failed == 0
    assert drawn(tmp_path / "stopped") == drawn(tmp_path / "whole")
    assert len({json.dumps(params, sort_keys=True) for params in drawn(tmp_path / "whole")}) == 6
