"""Every scheduler through the same small search; stopped trials as results, in the study, off the front."""

from __future__ import annotations

import json

import optuna
import pyarrow.parquet as pq
import pytest

import prunetune
from prunetune import metrics as M
from prunetune.config import validate
from prunetune.errors import ConfigError
from prunetune.search import run_search
from prunetune.search.synthetic import SyntheticTrial, synthetic_teacher
from tests.search.conftest import SPACE

STEPS = 9  # reports at every step; with grace 1 and eta 3, rungs at steps 1 and 3


def scheduler_config(scheduler: str, **search):
    return validate({
        "trial": {"max_steps": STEPS, "eval_every": 1, "rung_latency": "measured"},  # synthetic: no model
        "space": SPACE,
        "search": {"num_trials": 8, "max_concurrent": 1, "seed": 0, "verbosity": 0, "reuse_actors": True,
                   "retime": "off", "sampler": "random", "scheduler": scheduler,
                   **({} if scheduler == "fifo" else {"grace_steps": 1, "reduction_factor": 3}), **search},
        "cluster": {"cpus_per_trial": 1},
    })


@pytest.mark.parametrize("scheduler", ["fifo", "asha", "moasha", "moasha-interval"])
def test_small_search_with_each_scheduler(scheduler, tmp_path, ray_local):
    outcome = run_search(scheduler_config(scheduler), run_dir=tmp_path / "run", trial_fn=SyntheticTrial(steps=STEPS),
                         teacher_fn=synthetic_teacher)
    table = pq.read_table(tmp_path / "run" / "results.parquet").to_pandas()
    assert len(table) == 8 == outcome.num_trials and outcome.num_failed == 0
    stopped = table[table["status"] == "STOPPED"]
    assert len(stopped) == outcome.num_stopped
    if scheduler == "fifo":
        assert stopped.empty and not (tmp_path / "run" / "scheduler.json").exists()
    else:
        assert len(stopped) >= 2  # of 8, at most ceil(n/3) go on at each rung
        ladder = json.loads((tmp_path / "run" / "scheduler.json").read_text())
        assert ladder["rungs"] == [1, 3] and len(ladder["directions"]) == (1 if scheduler == "asha" else 3)


def test_stopped_trials_are_results_but_never_on_the_front(tmp_path, ray_local):
    run = tmp_path / "run"
    config = scheduler_config("moasha")
    outcome = run_search(config, run_dir=run, trial_fn=SyntheticTrial(steps=STEPS), teacher_fn=synthetic_teacher)

    table = pq.read_table(run / "results.parquet").to_pandas()
    stopped, finished = table[table["status"] == "STOPPED"], table[table["status"] == "TERMINATED"]
    assert len(stopped) >= 2 and len(finished) >= 1
    assert set(stopped[M.STOPPED_AT_STEP]) <= {1, 3} and finished[M.STOPPED_AT_STEP].isna().all()
    for key in config.search.objectives:  # the rung's objectives
        assert stopped[key].notna().all(), key
    for trial_id in stopped["trial_id"]:  # no checkpoint and no model kept
        trial_dir = run / "trials" / trial_id
        assert not (trial_dir / "checkpoint").exists() and not (trial_dir / "model").exists()
        assert not list((run / "tune" / trial_id).glob("checkpoint_*"))

    study = optuna.load_study(study_name="prunetune", storage=f"sqlite:///{run / 'study.db'}")
    told = {t.user_attrs["tune_trial_id"]: t for t in study.trials if "tune_trial_id" in t.user_attrs}
    for _, row in stopped.iterrows():
        trial = told[row["trial_id"]]
        assert trial.state == optuna.trial.TrialState.COMPLETE
        assert trial.user_attrs[M.STOPPED_AT_STEP] == row[M.STOPPED_AT_STEP]
        assert trial.values == pytest.approx([row[key] for key in config.search.objectives])
    for trial_id in finished["trial_id"]:
        assert M.STOPPED_AT_STEP not in told[trial_id].user_attrs

    summary = prunetune.report(run)
    on_front = set(summary.analysis.trials.loc[summary.analysis.trials["on_front"], "trial_id"])
    assert on_front and not on_front & set(stopped["trial_id"])
    assert outcome.front_size == len(on_front)
    chosen = prunetune.pick(run)
    assert chosen.found and chosen.trial_id in set(finished["trial_id"])
    with pytest.raises(ConfigError, match="stopped this trial early"):
        prunetune.export(run, trial_id=stopped["trial_id"].iloc[0], wandb=False)


def test_stopped_trials_told_as_infeasible(tmp_path, ray_local):
    from prunetune.search import _driver

    run = tmp_path / "run"
    config = scheduler_config("moasha", num_trials=6)
    original = _driver.make_searcher
    try:
        _driver.make_searcher = lambda *args, **kwargs: original(*args, **{**kwargs, "stopped_as": "infeasible"})
        run_search(config, run_dir=run, trial_fn=SyntheticTrial(steps=STEPS), teacher_fn=synthetic_teacher)
    finally:
        _driver.make_searcher = original
    study = optuna.load_study(study_name="prunetune", storage=f"sqlite:///{run / 'study.db'}")
    stopped = [t for t in study.trials if M.STOPPED_AT_STEP in t.user_attrs]
    assert stopped and all(t.constraints["failed"] > 0 for t in stopped)
    assert all(t.constraints["failed"] < 0 for t in study.trials
               if t.state == optuna.trial.TrialState.COMPLETE and M.STOPPED_AT_STEP not in t.user_attrs)


@pytest.mark.parametrize(("search", "message"), [
    ({"objectives": {"accuracy": "max", "speedup": "max"}}, "cannot carry speedup"),
    ({"grace_steps": 9}, "no rung before the last step"),
])
def test_scheduler_settings_are_checked_before_a_search_starts(search, message, tmp_path):
    from prunetune.search._driver import run_search as start

    raw = {"trial": {"max_steps": 30, "eval_every": 5}, "space": SPACE,
           "search": {"scheduler": "moasha", "grace_steps": 5, **search}}
    if search.get("grace_steps") == 9:
        raw["trial"]["max_steps"] = 9
        raw["trial"]["eval_every"] = 3
    config = validate(raw)  # a single trial of this configuration has no scheduler: it is not refused
    with pytest.raises(ConfigError, match=message):
        start(config, run_dir=tmp_path / "run")
    assert not (tmp_path / "run").exists()  # refused before anything was written


def test_a_single_trial_is_not_refused_for_the_search_it_is_not_in():
    from prunetune.config import load

    config = load("quickstart", ["trial.max_steps=40", "trial.eval_every=20"], check_model=False)
    assert config.trial.eval_every == 20


def test_the_resolved_search_turns_on_report_objectives(tmp_path):
    from prunetune.cluster import RunDir
    from prunetune.search._driver import resolve_config

    assert resolve_config(scheduler_config("moasha"), RunDir(tmp_path)).trial.report_objectives
    assert not resolve_config(scheduler_config("fifo"), RunDir(tmp_path)).trial.report_objectives


def test_the_scheduler_for_a_users_own_tuner_is_checked_too():
    import prunetune

    with pytest.raises(ConfigError, match="no rung before the last step"):
        prunetune.tune_scheduler(prunetune.load_config("quickstart", ["search.scheduler=moasha", "search.grace_steps=60"]))
