"""The searcher's state is the study: a pickle without secrets, a resume that runs on the trials it
is given and tells each once, draws that do not depend on a restart, named objectives, and one
study per run directory."""

from __future__ import annotations

import json
import pickle

import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution
from optuna.trial import TrialState

from prunetune.errors import ConfigError
from prunetune.search import ParetoOptunaSearch, make_sampler, redact_url
from prunetune.search._optuna import Continued, fail_leftover_trials, fail_nameless_trials

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


def test_a_pickled_searcher_holds_no_password_and_no_live_study(tmp_path):
    """Tune pickles the searcher with its experiment: nothing secret, nothing live goes with it."""
    url = f"sqlite:///{tmp_path / 'study.db'}"
    search = searcher(url, tmp_path)
    search.on_trial_complete("t0", result=evaluate(search.suggest("t0")))
    search._storage_url = "postgresql://user:s3cret@db.example/studies"  # as the configuration would give it
    text = pickle.dumps(search)
    assert b"s3cret" not in text
    live = pickle.loads(text).__dict__.values()
    assert not any(isinstance(value, (optuna.Study, optuna.Trial, optuna.storages.BaseStorage)) for value in live)


def test_no_searcher_state_is_saved(tmp_path):
    search = searcher(f"sqlite:///{tmp_path / 'study.db'}", tmp_path)
    search.suggest("t0")
    search.save_to_dir(str(tmp_path / "tune"))  # what Tune calls with each experiment snapshot
    assert not (tmp_path / "tune").exists()


def continued(study: optuna.Study, tune_id: str) -> Continued:
    [trial] = [t for t in by_tune_id(study, tune_id) if "resumed_from_trial" not in t.user_attrs]
    return Continued(number=trial.number, config={**trial.params, "resume.trial_id": tune_id})


def test_a_resumed_searcher_runs_on_the_trials_it_is_given_and_tells_each_once(tmp_path):
    url = f"sqlite:///{tmp_path / 'study.db'}"
    search = searcher(url, tmp_path)
    params = search.suggest("t0")
    search.on_trial_complete("t0", result=evaluate(params))  # told, and its row was lost with the driver
    running = search.suggest("t1")  # running when the driver died
    search.study.ask()  # asked, and the driver died before it named its Tune trial
    assert fail_nameless_trials(url, "s") == [2]

    resumed = searcher(url, tmp_path)  # a new searcher over the same study
    resumed.continue_trials([continued(resumed.study, "t0"), continued(resumed.study, "t1")])
    assert resumed.suggest("new0") == {**params, "resume.trial_id": "t0"}
    assert resumed.suggest("new1") == {**running, "resume.trial_id": "t1"}
    resumed.on_trial_complete("new0", result=evaluate(params))  # reported again: not told twice
    resumed.on_trial_complete("new1", result=evaluate(running))
    resumed.on_trial_complete("new1", result=evaluate(running))
    fresh = resumed.suggest("t3")  # then new trials, from the study
    resumed.on_trial_complete("t3", result=evaluate(fresh))

    study = resumed.study
    [told] = by_tune_id(study, "t1")
    assert told.state == TrialState.COMPLETE and told.values == pytest.approx(list(evaluate(running).values()))
    [nameless] = [t for t in study.trials if "tune_trial_id" not in t.user_attrs]
    assert nameless.state == TrialState.FAIL and nameless.user_attrs["failed"] is True
    complete = study.get_trials(states=(TrialState.COMPLETE,))
    assert [t.user_attrs["tune_trial_id"] for t in complete] == ["t0", "t1", "t3"]
    assert not study.get_trials(states=(TrialState.RUNNING,))


def test_leftover_trials_fail_once_the_search_has_ended(tmp_path):
    url = f"sqlite:///{tmp_path / 'study.db'}"
    search = searcher(url, tmp_path)
    search.suggest("t0")  # no Tune trial will ever finish it
    [orphan] = by_tune_id(search.study, "t0")
    assert fail_leftover_trials(url, "s") == [orphan.number]
    [orphan] = by_tune_id(search.study, "t0")
    assert orphan.state == TrialState.FAIL and orphan.user_attrs["failed"] is True


def test_a_trial_whose_worker_was_lost_joins_the_study_when_a_resume_finishes_it(tmp_path):
    url = f"sqlite:///{tmp_path / 'study.db'}"
    search = searcher(url, tmp_path)
    params = search.suggest("t0")
    search.on_trial_complete("t0", error=True)  # Tune gave up on its node: told FAIL, not infeasible
    search.on_trial_complete("t0", error=True)  # and again

    resumed = searcher(url, tmp_path)
    resumed.continue_trials([continued(resumed.study, "t0")])
    assert resumed.suggest("a1") == {**params, "resume.trial_id": "t0"}
    resumed.on_trial_complete("a1", error=True)  # lost again: a later resume may finish it
    again = searcher(url, tmp_path)
    again.continue_trials([continued(again.study, "t0")])
    again.suggest("a2")
    again.on_trial_complete("a2", result=evaluate(params))  # this resume ran it to its end
    again.on_trial_complete("a2", result=evaluate(params))  # reported again: told once
    last = searcher(url, tmp_path)  # the driver died before the row was written: run on once more
    [copy] = [t for t in by_tune_id(last.study, "t0") if "resumed_from_trial" in t.user_attrs]
    last.continue_trials([Continued(number=copy.number, config={**params, "resume.trial_id": "t0"})])
    last.suggest("a3")
    last.on_trial_complete("a3", result=evaluate(params))  # the copy is not made twice

    lost, finished = by_tune_id(last.study, "t0")
    assert lost.state == TrialState.FAIL and "failed" not in lost.user_attrs
    assert finished.state == TrialState.COMPLETE and finished.params == lost.params == params
    assert finished.values == pytest.approx(list(evaluate(params).values()))
    assert finished.user_attrs["resumed_from_trial"] == lost.number and finished.user_attrs["failed"] is False
    assert finished.constraints == {"failed": -1.0}  # feasible: the samplers learn from it


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
    searcher(url, tmp_path / "before").suggest("t0")
    with pytest.raises(ConfigError, match="before"):  # another run directory's study is refused ...
        searcher(url, tmp_path / "after")

    resumed = ParetoOptunaSearch(SPACE, objectives=OBJECTIVES, storage_url=url, study_name="s",
                                 run_dir=str(tmp_path / "after"), moved_from=str(tmp_path / "before"),
                                 sampler=make_sampler("tpe", seed=0, num_trials=10))
    assert resumed.study.user_attrs["run_dir"] == str(tmp_path / "after")  # ... unless the search moved from there
    with pytest.raises(ConfigError, match="after"):  # the vacated directory no longer owns it
        searcher(url, tmp_path / "before")


@pytest.mark.parametrize("sampler", ["nsga2", "tpe", "gp", "random"])
def test_searcher_with_each_sampler_pickles_and_samples_after(sampler, tmp_path):
    # Tune pickles the searcher with its experiment; Optuna 5.1's NSGA-II holds a thread lock.
    url = f"sqlite:///{tmp_path / 'study.db'}"
    search = ParetoOptunaSearch(SPACE, objectives=OBJECTIVES, storage_url=url, study_name="s", run_dir=str(tmp_path),
                                sampler=make_sampler(sampler, seed=0, num_trials=6, n_startup_trials=2,
                                                     population_size=2))
    for tid in ("t0", "t1"):
        search.on_trial_complete(tid, result=evaluate(search.suggest(tid)))
    resumed = pickle.loads(pickle.dumps(search))
    for tid in ("t2", "t3", "t4"):
        resumed.on_trial_complete(tid, result=evaluate(resumed.suggest(tid)))
    assert len(resumed.study.get_trials(states=(TrialState.COMPLETE,))) == 5
    pickle.dumps(resumed)  # and again


def draws(url: str, run_dir, sampler: str, tune_ids, *, seed: int | None = 3, num_trials: int = 10) -> list[dict]:
    """The configurations a new searcher over the study at ``url`` draws for ``tune_ids``, one at a time."""
    search = ParetoOptunaSearch({**SPACE, "trial.block_size": CategoricalDistribution([16, 32])},
                                objectives=OBJECTIVES, storage_url=url, study_name="s", run_dir=str(run_dir),
                                sampler=make_sampler(sampler, seed=seed, num_trials=num_trials, n_startup_trials=3,
                                                     population_size=4))
    drawn = []
    for tid in tune_ids:
        params = search.suggest(tid)
        search.on_trial_complete(tid, result={**evaluate(params), "accuracy": evaluate(params)["accuracy"]
                                              + 0.001 * params["trial.block_size"]})
        drawn.append(params)
    return drawn


@pytest.mark.parametrize("sampler", ["nsga2", "tpe", "gp", "random"])
def test_a_resumed_search_draws_what_an_uninterrupted_one_draws(sampler, tmp_path):
    total = 6 if sampler == "gp" else 10  # GP's model is slow to fit
    ids = [f"t{i}" for i in range(total)]
    whole = draws(f"sqlite:///{tmp_path / 'whole.db'}", tmp_path / "whole", sampler, ids, num_trials=total)
    split = tmp_path / "split"
    url = f"sqlite:///{tmp_path / 'split.db'}"
    first = draws(url, split, sampler, ids[:4], num_trials=total)  # the driver stops after 4 trials ...
    rest = draws(url, split, sampler, ids[4:], num_trials=total)  # ... and a new one resumes the study
    assert first + rest == whole
    assert len({json.dumps(params, sort_keys=True) for params in whole}) == total  # draws, not one point again


def test_a_search_without_a_seed_keeps_the_one_it_drew_for_its_resume(tmp_path):
    url = f"sqlite:///{tmp_path / 'study.db'}"
    first = draws(url, tmp_path, "tpe", ["t0", "t1"], seed=None)
    seed = optuna.load_study(study_name="s", storage=url).user_attrs["sampler_seed"]
    rest = draws(url, tmp_path, "tpe", ["t2", "t3", "t4"], seed=None)
    seeded = draws(f"sqlite:///{tmp_path / 'seeded.db'}", tmp_path / "seeded", "tpe", ["t0", "t1", "t2", "t3", "t4"],
                   seed=seed)
    assert first + rest == seeded
