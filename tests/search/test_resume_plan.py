"""What a resume continues, read from the project's own files: never Tune's saved experiment.

Unit tests sort a hand-made study into trials that run on and trials that are done, pick a
trial's newest complete checkpoint, and compare configurations; the searches show that Tune's
files, missing or cut short, change nothing, and that an edited config.yaml is refused.
"""

from __future__ import annotations

import json
from pathlib import Path

import optuna
import pytest
import yaml
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState, create_trial

from prunetune.cluster import RunDir
from prunetune.errors import ConfigError
from prunetune.names import RESULTS_FILE, STARTED_CONFIG_FILE, TERMINATED, TUNE_DIR
from prunetune.search import resume_search, run_search
from prunetune.search._resume import (
    MAY_CHANGE_ON_RESUME,
    changed_keys,
    check_unchanged,
    experiments,
    newest_checkpoint,
    next_experiment,
    plan_resume,
)
from prunetune.search._results import read_rows, write_results
from prunetune.search.synthetic import STARTS_FILE, SyntheticTrial, synthetic_teacher
from tests.search.conftest import synthetic_config

SPACE = {"trial.sparsity": FloatDistribution(0.0, 0.95)}


def trial(sparsity: float, state: TrialState, **user_attrs) -> optuna.trial.FrozenTrial:
    values = [0.9, 1.0] if state == TrialState.COMPLETE else None
    return create_trial(state=state, params={"trial.sparsity": sparsity}, distributions=SPACE, values=values,
                        user_attrs=user_attrs)


def study_of(*trials) -> optuna.Study:
    study = optuna.create_study(directions=["maximize", "minimize"])
    for made in trials:
        study.add_trial(made)
    return study


def test_the_trials_that_run_on_and_those_that_are_done(tmp_path):
    study = study_of(
        trial(0.1, TrialState.COMPLETE, tune_trial_id="done", failed=False),
        trial(0.2, TrialState.COMPLETE, tune_trial_id="told_no_row", failed=False),
        trial(0.3, TrialState.RUNNING, tune_trial_id="running"),
        trial(0.4, TrialState.FAIL, tune_trial_id="lost"),  # Tune gave up on its node
        trial(0.5, TrialState.FAIL, tune_trial_id="orphan", failed=True),
        trial(0.6, TrialState.COMPLETE, tune_trial_id="bad_config", failed=True),
        trial(0.7, TrialState.FAIL, tune_trial_id="lost_then_finished"),
        trial(0.7, TrialState.COMPLETE, tune_trial_id="lost_then_finished", failed=False, resumed_from_trial=6),
        trial(0.1, TrialState.COMPLETE, duplicate_of=0, failed=False),  # a clone told its twin's outcome
        trial(0.8, TrialState.WAITING),  # a starting point not asked for yet
    )
    rows = [{"trial_id": "done", "status": TERMINATED}, {"trial_id": "bad_config", "status": "ERROR"},
            {"trial_id": "lost", "status": "ERROR"}, {"trial_id": "lost_then_finished", "status": "ERROR"},
            {"trial_id": "orphan", "status": "ERROR"}]

    plan = plan_resume(study.trials, rows, RunDir(tmp_path), num_trials=10)

    assert [(item.trial_id, item.number) for item in plan.to_continue] == [
        ("told_no_row", 1), ("running", 2), ("lost", 3), ("lost_then_finished", 7)]
    assert plan.to_continue[1].params == {"trial.sparsity": 0.3} and plan.to_continue[1].checkpoint is None
    assert plan.new_trials == 10 - 7  # seven Tune trials were made
    assert plan.num_samples == 4 + 3
    config = plan.to_continue[1].continued().config
    assert config == {"trial.sparsity": 0.3, "resume.trial_id": "running"}


def write_checkpoint(folder: Path, step: int, *, cut: bool = False) -> None:
    folder.mkdir(parents=True)
    text = json.dumps({"step": step})
    (folder / "state.json").write_text(text[: len(text) // 2] if cut else text)


def test_the_newest_complete_checkpoint_is_continued_from(tmp_path):
    run = RunDir(tmp_path)
    assert newest_checkpoint(run, "t1") is None
    write_checkpoint(tmp_path / TUNE_DIR / "t1" / "checkpoint_000002", 2)
    assert newest_checkpoint(run, "t1") == str(tmp_path / TUNE_DIR / "t1" / "checkpoint_000002")
    assert next_experiment(run) == "resumed-1"
    # The first resume's experiment holds a newer one, and a copy cut short after it.
    write_checkpoint(tmp_path / TUNE_DIR / "resumed-1" / "t1" / "checkpoint_000000", 3)
    write_checkpoint(tmp_path / TUNE_DIR / "resumed-1" / "t1" / "checkpoint_000001", 4, cut=True)
    assert newest_checkpoint(run, "t1") == str(tmp_path / TUNE_DIR / "resumed-1" / "t1" / "checkpoint_000000")
    assert experiments(run) == [(TUNE_DIR,), (TUNE_DIR, "resumed-1")] and next_experiment(run) == "resumed-2"


def test_only_the_documented_keys_may_change():
    started = synthetic_config(num_trials=4).to_dict()
    edited = synthetic_config(num_trials=4, verbosity=2).to_dict()
    edited["cluster"]["address"] = "auto"
    assert changed_keys(started, edited) == [] and set(MAY_CHANGE_ON_RESUME) == {"cluster.address", "search.verbosity"}

    narrowed = synthetic_config(num_trials=4, space={"trial.sparsity": {"uniform": [0.0, 0.5]},
                                                    "trial.block_size": {"choice": [16, 32]}},
                                trial={"max_steps": 20}).to_dict()
    # trial.eval_every follows trial.max_steps in the resolved configuration
    assert changed_keys(started, narrowed) == ["space.trial.method", "space.trial.sparsity",
                                               "space.trial.temperature", "trial.eval_every", "trial.max_steps"]


def finished_search(run: Path, num_trials: int = 3) -> list[dict]:
    config = synthetic_config(sampler="random", num_trials=num_trials, max_concurrent=1)
    run_search(config, run_dir=run, trial_fn=SyntheticTrial(), teacher_fn=synthetic_teacher)
    return read_rows(run / RESULTS_FILE)


def test_an_edited_configuration_is_refused_naming_the_keys(tmp_path, ray_local):
    run = tmp_path / "run"
    finished_search(run, num_trials=2)
    saved = yaml.safe_load((run / "config.yaml").read_text())
    saved["trial"]["max_steps"] = 20
    saved["space"]["trial.sparsity"] = {"uniform": [0.0, 0.5]}
    saved["search"]["verbosity"] = 1  # documented: accepted
    (run / "config.yaml").write_text(yaml.safe_dump(saved, sort_keys=False))

    with pytest.raises(ConfigError) as raised:
        resume_search(run, trial_fn=SyntheticTrial(), teacher_fn=synthetic_teacher)
    message = str(raised.value)
    assert "space.trial.sparsity" in message and "trial.max_steps (10 -> 20)" in message
    assert "search.verbosity" not in message.split("a resume may change only")[0]

    saved["trial"]["max_steps"] = 10
    saved["space"]["trial.sparsity"] = {"uniform": [0.0, 0.95]}
    (run / "config.yaml").write_text(yaml.safe_dump(saved, sort_keys=False))
    check_unchanged(yaml.safe_load((run / "config.yaml").read_text()), RunDir(run))
    assert (run / STARTED_CONFIG_FILE).is_file()
    outcome = resume_search(run, trial_fn=SyntheticTrial(), teacher_fn=synthetic_teacher, verbosity=0)
    assert outcome.num_trials == 2


@pytest.mark.parametrize("damage", ["cut", "delete"])
def test_tunes_saved_experiment_is_not_read(tmp_path, ray_local, damage):
    """Tune's files, cut short by a full disk or gone, change nothing: a row lost with the driver
    comes back from the trial's result, and no trial runs again or is drawn anew."""
    run = tmp_path / "run"
    rows = finished_search(run)
    write_results(rows[:2], run / RESULTS_FILE)  # the driver died before the third row was written
    for path in (run / TUNE_DIR).iterdir():
        if path.is_file():
            if damage == "cut":
                path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
            else:
                path.unlink()

    outcome = resume_search(run, trial_fn=SyntheticTrial(), teacher_fn=synthetic_teacher)

    again = read_rows(run / RESULTS_FILE)
    assert [row["trial_id"] for row in again] == [row["trial_id"] for row in rows] and outcome.num_failed == 0
    assert again[2]["accuracy"] == pytest.approx(rows[2]["accuracy"])
    for row in rows:
        assert (run / "trials" / row["trial_id"] / STARTS_FILE).read_text().split() == ["0"]  # none ran again
    study = optuna.load_study(study_name="prunetune", storage=f"sqlite:///{run / 'study.db'}")
    assert len(study.trials) == 3 and all(t.state == TrialState.COMPLETE for t in study.trials)
    assert (run / TUNE_DIR / "resumed-1").is_dir()  # a new experiment of its own
    for _ in range(2):  # and a resume with nothing left to run
        assert resume_search(run, trial_fn=SyntheticTrial(), teacher_fn=synthetic_teacher).num_trials == 3
