"""search.time_budget: parsed at load, no trial started that the time left cannot hold, the
budget's spending kept for --resume, and either of budget and num_trials ends the search."""

from __future__ import annotations

import json

import pytest
from ray.tune.search import Searcher

from prunetune.config import validate
from prunetune.errors import ConfigError
from prunetune.names import BUDGET_FILE, TERMINATED
from prunetune.search import resume_search, run_search
from prunetune.search._results import read_rows
from prunetune.search.budget import TimeBudget, format_duration
from prunetune.search.synthetic import SyntheticTrial, synthetic_teacher
from tests.search.conftest import synthetic_config


@pytest.mark.parametrize("text, seconds", [("90s", 90), ("10m", 600), ("2h", 7200), ("1h30m", 5400), ("45", 45),
                                           ("1.5h", 5400), (120, 120)])
def test_a_budget_reads_as_a_duration(text, seconds):
    assert validate({"search": {"time_budget": text}}).search.time_budget == seconds


@pytest.mark.parametrize("text", ["10 minutes", "", "m", "-5m"])
def test_a_budget_that_is_not_a_duration_names_the_key_and_the_form(text):
    with pytest.raises(ConfigError, match=r"search.time_budget = .*(expected a duration such as 90s|greater than 0)"):
        validate({"search": {"time_budget": text}})


def test_a_search_needs_a_number_of_trials_or_a_budget():
    with pytest.raises(ConfigError, match="num_trials = null needs search.time_budget"):
        validate({"search": {"num_trials": None}})
    assert validate({"search": {"num_trials": None, "time_budget": "5m"}}).search.planned_trials == 24


def test_durations_print_as_they_are_written():
    assert [format_duration(s) for s in (600, 5410, 42.4, 0)] == ["10m", "1h30m10s", "42s", "0s"]


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def test_no_trial_starts_that_the_time_left_cannot_hold(monkeypatch, tmp_path):
    clock = Clock()
    monkeypatch.setattr("prunetune.search.budget._now", clock)
    budget = TimeBudget(seconds=600, path=str(tmp_path / BUDGET_FILE))
    assert budget.starts_another()  # no trial has ended: nothing says how long one takes
    clock.now += 300
    budget.trial_ended(200.0)
    budget.trial_ended(260.0)
    assert budget.typical_trial() == 230.0 and budget.left() == 300 and budget.starts_another()
    clock.now += 80  # 220 s left, less than a typical trial
    assert not budget.starts_another()
    saved = json.loads((tmp_path / BUDGET_FILE).read_text())
    assert saved["spent_seconds"] == 300 and saved["trial_seconds"] == [200.0, 260.0]


def test_a_resumed_budget_goes_on_from_what_was_spent(monkeypatch, tmp_path):
    clock = Clock()
    monkeypatch.setattr("prunetune.search.budget._now", clock)
    config = synthetic_config(time_budget="10m")
    first = TimeBudget.of(config, tmp_path)
    clock.now += 240
    first.trial_ended(100.0)
    clock.now += 3600  # the driver was down: that time does not count
    resumed = TimeBudget.of(config, tmp_path, resumed=True)
    assert resumed.left() == 360 and resumed.typical_trial() == 100.0


def test_the_searcher_ends_the_search_when_the_budget_is_spent(tmp_path):
    from prunetune.search._optuna import make_sampler, ParetoOptunaSearch

    budget = TimeBudget(seconds=0.0001)
    searcher = ParetoOptunaSearch({}, objectives={"accuracy": "max", "latency_ms": "min"},
                                  sampler=make_sampler("random", seed=0, num_trials=4),
                                  storage_url=f"sqlite:///{tmp_path}/study.db", study_name="s", run_dir=str(tmp_path),
                                  budget=budget)
    assert searcher.suggest("t1") == Searcher.FINISHED


def test_a_budget_alone_ends_a_search_with_every_trial_run_to_its_end(tmp_path, ray_local):
    config = synthetic_config(sampler="random", num_trials=None, time_budget=6)
    outcome = run_search(config, run_dir=tmp_path / "run", teacher_fn=synthetic_teacher,
                         trial_fn=SyntheticTrial(steps=8, seconds_per_step=0.25))
    rows = read_rows(tmp_path / "run" / "results.parquet")
    assert rows and {row["status"] for row in rows} == {TERMINATED}  # none was cut short
    saved = json.loads((tmp_path / "run" / BUDGET_FILE).read_text())
    assert len(saved["trial_seconds"]) == len(rows) and outcome.time_budget == 6
    # The budget is spent: a resume draws nothing more and keeps every row.
    again = resume_search(tmp_path / "run", teacher_fn=synthetic_teacher, trial_fn=SyntheticTrial(steps=8))
    assert again.num_trials == len(rows)


def test_whichever_of_budget_and_num_trials_comes_first_ends_the_search(tmp_path, ray_local):
    config = synthetic_config(sampler="random", num_trials=3, time_budget="1h")
    outcome = run_search(config, run_dir=tmp_path / "run", teacher_fn=synthetic_teacher, trial_fn=SyntheticTrial())
    assert outcome.num_trials == 3 and outcome.budget_spent < 3600
