"""A resumed search whose saved Tune files are out of step, or cut short, still runs exactly ``num_trials``.

Ray uploads the experiment snapshot and the search generator's state one after the other;
a driver that dies in between, or a full run directory, leaves one newer than the other, or
a file cut short. The tests make each case by editing a finished search's files as such a
death would have left them.
"""

from __future__ import annotations

import json
from pathlib import Path

import optuna
import pytest
import ray.cloudpickle as cloudpickle
from optuna.trial import TrialState

from prunetune.cluster import RunDir
from prunetune.names import RESULTS_FILE, TERMINATED, TUNE_DIR
from prunetune.search import resume_search, run_search
from prunetune.search._results import read_rows, write_results
from prunetune.search._tune_state import run_snapshot_trials, saved_state_problem
from prunetune.search.synthetic import SyntheticTrial, synthetic_teacher
from tests.search.conftest import synthetic_config

NUM_TRIALS = 3


def finished_search(run: Path) -> list[str]:
    """A finished search of NUM_TRIALS trials, one at a time; its trial ids in creation order."""
    config = synthetic_config(sampler="random", num_trials=NUM_TRIALS, max_concurrent=1)
    run_search(config, run_dir=run, trial_fn=SyntheticTrial(), teacher_fn=synthetic_teacher)
    return [trial.trial_id for trial in run_snapshot_trials(RunDir(run))]


def newest(run: Path, pattern: str) -> Path:
    return max((run / TUNE_DIR).glob(pattern))


def edit_snapshot(run: Path, edit) -> None:
    """Apply ``edit`` to the experiment snapshot's list of trials (each a dict of Tune's trial state)."""
    path = newest(run, "experiment_state-*.json")
    state = json.loads(path.read_text())
    trials = [(json.loads(trial), metadata) for trial, metadata in state["trial_data"]]
    state["trial_data"] = [(json.dumps(trial), metadata) for trial, metadata in edit(trials)]
    path.write_text(json.dumps(state))


def generator_state(run: Path) -> tuple[Path, dict]:
    path = newest(run, "search_gen_state-*.json")
    return path, cloudpickle.loads(path.read_bytes())


def test_a_generator_state_newer_than_the_snapshot_still_runs_every_trial(tmp_path, ray_local):
    run = tmp_path / "run"
    made = finished_search(run)
    # Tune's snapshot was last uploaded before the third trial was made, its generator state after.
    edit_snapshot(run, lambda trials: trials[:-1])
    write_results([row for row in read_rows(run / RESULTS_FILE) if row["trial_id"] != made[-1]], run / RESULTS_FILE)

    outcome = resume_search(run, trial_fn=SyntheticTrial(), teacher_fn=synthetic_teacher)

    rows = read_rows(run / RESULTS_FILE)
    assert len(rows) == NUM_TRIALS and all(row["status"] == TERMINATED for row in rows) and outcome.num_failed == 0
    assert made[-1] not in {row["trial_id"] for row in rows}  # made again, as a new trial
    assert len(run_snapshot_trials(RunDir(run))) == NUM_TRIALS


def test_a_snapshot_newer_than_the_generator_state_runs_no_extra_trial_and_tells_its_searcher(tmp_path, ray_local):
    run = tmp_path / "run"
    made = finished_search(run)
    # The generator state was last uploaded while the second trial ran, the snapshot while the third did.
    path, state = generator_state(run)
    state["counter"] = NUM_TRIALS - 1
    path.write_bytes(cloudpickle.dumps(state))
    edit_snapshot(run, lambda trials: [*trials[:-1], ({**trials[-1][0], "status": "RUNNING"}, trials[-1][1])])
    searcher_path = newest(run, "searcher-state-*.json")
    searcher = json.loads(searcher_path.read_text())
    searcher["completed"].remove(made[-1])
    searcher_path.write_text(json.dumps(searcher))

    resume_search(run, trial_fn=SyntheticTrial(), teacher_fn=synthetic_teacher)

    assert sorted(row["trial_id"] for row in read_rows(run / RESULTS_FILE)) == sorted(made)  # no fourth trial
    assert sorted(trial.trial_id for trial in run_snapshot_trials(RunDir(run))) == sorted(made)
    # The restarted trial held a concurrency slot, so its completion reached the Optuna searcher.
    assert made[-1] in json.loads(newest(run, "searcher-state-*.json").read_text())["completed"]


@pytest.mark.parametrize("cut", ["experiment_state-*.json", "search_gen_state-*.json", "searcher-state-*.json"])
def test_a_saved_experiment_cut_short_continues_from_the_results_and_the_study(tmp_path, ray_local, cut):
    run = tmp_path / "run"
    made = finished_search(run)
    # The third trial had not finished when the disk filled up and cut a file of Tune's short.
    write_results([row for row in read_rows(run / RESULTS_FILE) if row["trial_id"] != made[-1]], run / RESULTS_FILE)
    path = newest(run, cut)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    assert cut.split("*")[0] in saved_state_problem(RunDir(run))

    outcome = resume_search(run, trial_fn=SyntheticTrial(), teacher_fn=synthetic_teacher)

    rows = read_rows(run / RESULTS_FILE)
    assert len(rows) == NUM_TRIALS and all(row["status"] == TERMINATED for row in rows) and outcome.num_failed == 0
    assert [row["trial_id"] for row in rows][:2] == made[:2] and rows[2]["trial_id"] != made[-1]
    study = optuna.load_study(study_name="prunetune", storage=f"sqlite:///{run / 'study.db'}")
    assert not study.get_trials(states=(TrialState.RUNNING,))
    [aside] = (run / TUNE_DIR).glob("unrestorable-*")
    assert {path.name for path in aside.iterdir()} >= {path.name}
    assert saved_state_problem(RunDir(run)) is None  # only the new experiment's files are left: a resume reads them
    again = resume_search(run, trial_fn=SyntheticTrial(), teacher_fn=synthetic_teacher)
    assert again.num_trials == NUM_TRIALS


def test_a_finished_search_whose_saved_experiment_was_cut_short_resumes_with_nothing_to_run(tmp_path, ray_local):
    run = tmp_path / "run"
    finished_search(run)
    rows = read_rows(run / RESULTS_FILE)
    path = newest(run, "experiment_state-*.json")  # the final snapshot, as the disk filled up
    path.write_bytes(path.read_bytes()[:100])

    for _ in range(2):  # and again: a resume of a search with no saved experiment left
        outcome = resume_search(run, trial_fn=SyntheticTrial(), teacher_fn=synthetic_teacher)
        assert read_rows(run / RESULTS_FILE) == rows and outcome.num_trials == NUM_TRIALS
