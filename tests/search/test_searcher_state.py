"""The searcher's own state: JSON without secrets, a resume that survives a badly timed death,
named objectives, and one study per run directory."""

from __future__ import annotations

import json
import pickle

import optuna
import pytest
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState

from prunetune.errors import ConfigError
from prunetune.search import ParetoOptunaSearch, make_sampler, redact_url
from prunetune.search._optuna import fail_leftover_trials

OBJECTIVES = {"accuracy": "max", "latency_ms": "min"}
SPACE = {"trial.sparsity": FloatDistribution(0.0, 0.95)}


def evaluate(params: dict) -> dict:
    sparsity = params["trial.sparsity"]
    return {"accuracy": 0.95 - 0.35 * sparsity**3, "latency_ms": 10 * (1 - sparsity) + 1}


def searcher(url: str, run_dir, *, points=None, study_name: str = "s") -> ParetoOptunaSearch:
    return ParetoOptunaSearch(SPACE, objectives=OBJECTIVES, storage_url=url, study_name=study_name,
                              run_dir=str(run_dir), points_to_evaluate=points,
                              sampler=make_sampler("tpe", seed=0, num_trials=10, n_startup_trials=4))


def by_tune_id(study: optuna.Study, tune_id: str) -> list[optuna.trial.FrozenTrial]:
    return [t for t in study.trials if t.user_attrs.get("tune_trial_id") == tune_id]


def test_redact_url():
    redacted = redact_url("postgresql://user:s3cret@db.example:5432/studies")
    assert redacted == "postgresql://user:***@db.example:5432/studies"
    assert redact_url("mysql+pymysql://u:p%40ss@h/db?charset=utf8") == "mysql+pymysql://u:***@h/db?charset=utf8"
    assert redact_url("sqlite:////runs/a/study.db") == "sqlite:////runs/a/study.db"
    assert "s3cret" not in redact_url("weird://user:s3cret@host")


def test_state_file_is_json_without_the_password(tmp_path):
    search = searcher(f"sqlite:///{tmp_path / 'study.db'}", tmp_path)
    params = search.suggest("t0")
    search.on_trial_complete("t0", result=evaluate(params))
    search.suggest("t1")
    # Where the password would come from at run time: the configuration, through reopen_at.
    search.reopen_at("postgresql://user:s3cret@db.example/studies")
    search.save(str(tmp_path / "state"))

    text = (tmp_path / "state").read_text()
    state = json.loads(text)
    assert "s3cret" not in text and state["storage_url"] == "postgresql://user:***@db.example/studies"
    assert state["study_name"] == "s" and state["run_dir"] == str(tmp_path)
    assert state["trial_numbers"] == {"t0": 0, "t1": 1} and state["completed"] == ["t0"]
    live = search.__getstate__().values()
    assert not any(isinstance(value, (optuna.Study, optuna.Trial, optuna.storages.BaseStorage)) for value in live)


def test_resume_after_a_death_between_tell_and_save(tmp_path):
    url = f"sqlite:///{tmp_path / 'study.db'}"
    search = searcher(url, tmp_path)
    tuner_pkl = pickle.dumps(search)  # Tune pickles the searcher before the search starts
    params = search.suggest("t0")
    search.on_trial_complete("t0", result=evaluate(params))
    late = search.suggest("t1")
    search.save(str(tmp_path / "state"))
    search.on_trial_complete("t1", result=evaluate(late))  # told, and the driver dies before the next save
    search.suggest("t2")  # asked after the last save: no Tune trial will ever finish it
    search.study.ask()  # asked, and the driver died before it named its Tune trial

    resumed = pickle.loads(tuner_pkl)
    resumed.reopen_at(url, run_dir=str(tmp_path))
    resumed.restore(str(tmp_path / "state"))
    resumed.on_trial_complete("t1", result=evaluate(late))  # Tune resumes t1 and finishes it again

    study = resumed.study
    [told] = by_tune_id(study, "t1")
    assert told.state == TrialState.COMPLETE and told.values == pytest.approx(list(evaluate(late).values()))
    [nameless] = [t for t in study.trials if "tune_trial_id" not in t.user_attrs]
    assert nameless.state == TrialState.FAIL and nameless.user_attrs["failed"] is True
    assert len(study.get_trials(states=(TrialState.COMPLETE,))) == 2
    params = resumed.suggest("t3")
    resumed.on_trial_complete("t3", result=evaluate(params))
    # t2 may still be in Tune's experiment: it runs until the search has ended, then fails.
    [orphan] = by_tune_id(study, "t2")
    assert orphan.state == TrialState.RUNNING
    assert fail_leftover_trials(url, "s") == [orphan.number]
    [orphan] = by_tune_id(study, "t2")
    assert orphan.state == TrialState.FAIL and orphan.user_attrs["failed"] is True
    assert not study.get_trials(states=(TrialState.RUNNING,))


def test_resume_after_a_death_between_the_experiment_and_the_searcher_snapshots(tmp_path):
    """Tune writes its experiment snapshot, then the searcher's state: a death in between
    restarts Tune trials the searcher's saved state never saw."""
    url = f"sqlite:///{tmp_path / 'study.db'}"
    search = searcher(url, tmp_path)
    tuner_pkl = pickle.dumps(search)
    search.suggest("t0")
    search.save(str(tmp_path / "state"))
    late = search.suggest("t1")  # in Tune's newer experiment snapshot, not in the searcher's state

    resumed = pickle.loads(tuner_pkl)
    resumed.reopen_at(url, run_dir=str(tmp_path))
    resumed.restore(str(tmp_path / "state"))
    resumed.on_trial_complete("t1", result=evaluate(late))

    [told] = by_tune_id(resumed.study, "t1")
    assert told.state == TrialState.COMPLETE and told.values == pytest.approx(list(evaluate(late).values()))
    resumed.save(str(tmp_path / "state"))
    assert json.loads((tmp_path / "state").read_text())["trial_numbers"] == {"t0": 0, "t1": 1}


def test_a_trial_whose_worker_was_lost_joins_the_study_when_a_resume_finishes_it(tmp_path):
    url = f"sqlite:///{tmp_path / 'study.db'}"
    search = searcher(url, tmp_path)
    tuner_pkl = pickle.dumps(search)
    params = search.suggest("t0")
    search.on_trial_complete("t0", error=True)  # Tune gave up on its node: told FAIL, not infeasible
    search.on_trial_complete("t0", error=True)  # a resume, and lost again
    search.save(str(tmp_path / "state"))

    resumed = pickle.loads(tuner_pkl)
    resumed.reopen_at(url, run_dir=str(tmp_path))
    resumed.restore(str(tmp_path / "state"))
    resumed.on_trial_complete("t0", result=evaluate(params))  # --resume ran it to its end
    resumed.on_trial_complete("t0", result=evaluate(params))  # reported again: told once
    again = pickle.loads(tuner_pkl)  # the driver died before it saved the searcher state
    again.reopen_at(url, run_dir=str(tmp_path))
    again.restore(str(tmp_path / "state"))
    again.on_trial_complete("t0", result=evaluate(params))  # the copy is not made twice

    lost, finished = by_tune_id(resumed.study, "t0")
    assert lost.state == TrialState.FAIL and "failed" not in lost.user_attrs
    assert finished.state == TrialState.COMPLETE and finished.params == lost.params == params
    assert finished.values == pytest.approx(list(evaluate(params).values()))
    assert finished.user_attrs["resumed_from_trial"] == lost.number and finished.user_attrs["failed"] is False
    assert finished.constraints == {"failed": -1.0}  # feasible: the samplers learn from it
    resumed.save(str(tmp_path / "state"))
    state = json.loads((tmp_path / "state").read_text())
    assert state["trial_numbers"] == {"t0": finished.number} and state["completed"] == ["t0"]


def test_the_study_names_its_objectives(tmp_path):
    search = searcher(f"sqlite:///{tmp_path / 'study.db'}", tmp_path)
    assert search.study.metric_names == ["accuracy", "latency_ms"]


def test_two_run_directories_never_share_a_study(tmp_path):
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    first = searcher(url, tmp_path / "a", study_name="shared")
    assert first.study.user_attrs["run_dir"] == str(tmp_path / "a")
    with pytest.raises(ConfigError) as raised:
        searcher(url, tmp_path / "b", study_name="shared")
    message = str(raised.value)
    assert "'shared'" in message and url in message and str(tmp_path / "a") in message
    searcher(url, tmp_path / "b", study_name="other")  # another study in the same database is fine


def test_starting_points_are_enqueued_once(tmp_path):
    url = f"sqlite:///{tmp_path / 'study.db'}"
    points = [{"trial.sparsity": 0.25}, {"trial.sparsity": 0.5}]
    first = searcher(url, tmp_path, points=points)
    assert first.suggest("t0") == points[0]
    again = searcher(url, tmp_path, points=points)  # the same run directory loads its study
    assert again.suggest("t1") == points[1]
    assert len(again.study.trials) == 2


def test_a_moved_run_directory_keeps_its_study(tmp_path):
    url = f"sqlite:///{tmp_path / 'study.db'}"
    search = searcher(url, tmp_path / "before")
    tuner_pkl = pickle.dumps(search)
    search.suggest("t0")
    search.save(str(tmp_path / "state"))

    resumed = pickle.loads(tuner_pkl)
    resumed.reopen_at(url, run_dir=str(tmp_path / "after"))
    resumed.restore(str(tmp_path / "state"))
    assert resumed.study.user_attrs["run_dir"] == str(tmp_path / "after")
    with pytest.raises(ConfigError, match="after"):  # the vacated directory no longer owns it
        searcher(url, tmp_path / "before")


def test_a_state_that_is_not_json_is_refused(tmp_path):
    search = searcher(f"sqlite:///{tmp_path / 'study.db'}", tmp_path)
    (tmp_path / "state").write_bytes(pickle.dumps({"version": 1}))
    with pytest.raises(ConfigError, match="searcher state"):
        search.restore(str(tmp_path / "state"))


@pytest.mark.parametrize("sampler", ["nsga2", "tpe", "gp", "random"])
def test_searcher_with_each_sampler_pickles_and_samples_after(sampler, tmp_path):
    # Tune pickles the searcher into tuner.pkl; Optuna 5.1's NSGA-II holds a thread lock.
    url = f"sqlite:///{tmp_path / 'study.db'}"
    search = ParetoOptunaSearch(SPACE, objectives=OBJECTIVES, storage_url=url, study_name="s", run_dir=str(tmp_path),
                                sampler=make_sampler(sampler, seed=0, num_trials=6, n_startup_trials=2,
                                                     population_size=2))
    for tid in ("t0", "t1"):
        search.on_trial_complete(tid, result=evaluate(search.suggest(tid)))
    resumed = pickle.loads(pickle.dumps(search))
    resumed.reopen_at(url, run_dir=str(tmp_path))
    for tid in ("t2", "t3", "t4"):
        resumed.on_trial_complete(tid, result=evaluate(resumed.suggest(tid)))
    assert len(resumed.study.get_trials(states=(TrialState.COMPLETE,))) == 5
    pickle.dumps(resumed)  # and again, with the locks it was given back
