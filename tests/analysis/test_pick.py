"""Picking a trial, with and without feasible trials, from the library and the command line."""

from __future__ import annotations

import pytest

from prunetune import metrics as M
from prunetune.analysis import analyse, explain, load_run, parse_constraints, pick_trial
from prunetune.analysis import runs as R
from prunetune.cli import main
from prunetune.errors import ConfigError
from tests.analysis import synthetic as S

# (accuracy, latency_ms, emissions_kg); teacher accuracy 0.95.
HAND = {"a": (0.94, 10.0, 5e-5), "b": (0.92, 6.0, 5e-5), "c": (0.88, 4.0, 4e-5), "d": (0.80, 3.0, 3e-5),
        "e": (0.91, 7.0, 5e-5)}  # e is dominated by b


@pytest.fixture
def hand_run(tmp_path):
    rows = [S.trial_row(tid, accuracy=acc, latency_ms=lat, emissions_kg=em, finished_at=i)
            for i, (tid, (acc, lat, em)) in enumerate(HAND.items())]
    directory = S.write_run(tmp_path / "hand", rows, S.run_config(constraints={"max_accuracy_drop": 0.05}))
    run = load_run(directory)
    return run, analyse(run)


def test_config_constraints_apply_by_default(hand_run):
    run, analysis = hand_run
    pick = pick_trial(run, analysis)
    # drop <= 0.05 leaves a, b and e (c drops 0.07); e is dominated by b. On the front {a, b}, scaled
    # over itself, a = (0, 1, 0) and b = (1, 0, 0) are both at distance 1: the first to finish (a) wins.
    assert set(pick.feasible[R.TRIAL_ID]) == {"a", "b", "e"}
    assert set(pick.candidates[R.TRIAL_ID]) == {"a", "b"}
    assert pick.constraints_source == "config.yaml search.constraints"
    assert pick.found and pick.trial_id == "a" and pick.on_run_front


@pytest.mark.parametrize(("prefer", "expected"),
                         [("accuracy", "b"), ("latency", "d"), ("emissions", "d"), ("knee", "c")])
def test_preferences(hand_run, prefer, expected):
    run, analysis = hand_run
    pick = pick_trial(run, analysis, constraints={"max_latency_ms": 6.5, "max_accuracy_drop": 0.2}, prefer=prefer)
    # Feasible: b, c, d. Scaled over that front: b = (0, 1, 1), c = (1/3, 1/3, 1/2), d = (1, 0, 0):
    # the knee is c (distance 0.69).
    assert set(pick.candidates[R.TRIAL_ID]) == {"b", "c", "d"}
    assert pick.trial_id == expected
    lines = explain(pick, analysis.objectives)
    assert any(f"trial {expected}:" in line for line in lines)
    assert "latency_ms <= 6.50" in lines[0]


def test_min_accuracy_and_float_noise_at_the_limit(hand_run):
    run, analysis = hand_run
    # 0.95 - 0.92 is 0.030000000000000027 in floats: a limit of 0.03 must still admit b.
    pick = pick_trial(run, analysis, constraints={"max_accuracy_drop": 0.03, "min_accuracy": 0.9}, prefer="latency")
    assert pick.trial_id == "b"


def test_nothing_feasible_shows_the_closest_trials(hand_run):
    run, analysis = hand_run
    pick = pick_trial(run, analysis, constraints={"min_accuracy": 0.93, "max_latency_ms": 5.0})
    assert not pick.found and pick.trial is None
    closest = pick.closest[R.TRIAL_ID].tolist()
    # Violations scaled by the ranges (accuracy 0.14, latency 7 ms): b .01/.14 + 1/7 = .21,
    # c .05/.14 = .36, e .02/.14 + 2/7 = .43, a 5/7 = .71, d .13/.14 = .93.
    assert closest == ["b", "c", "e"]
    lines = explain(pick, analysis.objectives)
    assert "None of the 5 finished trials satisfies every constraint" in lines[1]
    assert "misses by" in lines[2] and lines[2].strip().startswith("b:")


def test_constraint_errors_name_key_and_value():
    with pytest.raises(ConfigError) as error:
        parse_constraints({"max_speed": 3, "min_accuracy": "high", "max_latency_ms": None}, source="search.constraints")
    assert "search.constraints.max_speed: expected max_<metric>" in str(error.value)
    assert "search.constraints.min_accuracy = 'high': expected a finite number" in str(error.value)
    assert parse_constraints({"max_latency_ms": None}, source="x") == []


def test_unknown_preference(hand_run):
    with pytest.raises(ConfigError, match="--prefer 'fast'"):
        pick_trial(*hand_run, prefer="fast")


def test_cli_pick(hand_run, capsys):
    run, _ = hand_run
    assert main(["pick", str(run.run_dir), "--max-latency-ms", "6.5", "--max-accuracy-drop", "0.2",
                 "--prefer", "accuracy"]) == 0
    out = capsys.readouterr().out
    assert "Picked: trial b" in out and "from the command line" in out and "on the run's Pareto front" in out
    assert main(["pick", str(run.run_dir), "--min-accuracy", "0.99"]) == 1
    out = capsys.readouterr().out
    assert "None of the 5 finished trials" in out and "Closest trials" in out


def test_cli_report(run_dir, capsys):
    assert main(["report", str(run_dir)]) == 0
    out = capsys.readouterr().out
    analysis = analyse(load_run(run_dir))
    assert f"Pareto front of {run_dir.name}" in out and f"{analysis.knee_id} ◆ knee" in out
    assert "dense teacher" in out and "t_err: TrialError" in out and "pareto.parquet" in out
    assert "plots/accuracy_vs_latency_ms.png" in out
    assert (run_dir / R.PARETO_FILE).is_file()
    assert "W&B" in out and not (run_dir / "wandb").exists()  # report alone logs nothing to W&B


def test_cli_errors_are_reported_not_raised(tmp_path, capsys):
    assert main(["report", str(tmp_path / "missing")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert M.ACCURACY  # the metric module is the source of keys used above


def test_limits_a_metric_can_never_take_are_refused():
    with pytest.raises(ConfigError) as info:
        parse_constraints({"max_latency_ms": -1, "min_accuracy": 1.5, "max_accuracy_drop": -0.1}, source="option")
    assert info.value.problems == [
        "option.max_latency_ms = -1: latency_ms is at least 0, so the limit must be too",
        "option.min_accuracy = 1.5: accuracy is between 0 and 1, so the limit must be too",
        "option.max_accuracy_drop = -0.1: accuracy_drop is between 0 and 1, so the limit must be too",
    ]


def test_the_summary_ends_with_the_commands_that_pick_and_export_its_choice(hand_run, tmp_path, monkeypatch):
    import io

    from rich.console import Console

    from prunetune.analysis import summarize_run

    run, analysis = hand_run
    monkeypatch.chdir(tmp_path)  # the commands name the run directory as typed from here: "hand"
    out = io.StringIO()
    summarize_run("hand", wandb=False, console=Console(file=out, width=200))
    last = out.getvalue().rstrip().splitlines()[-4:]
    chosen = pick_trial(run, analysis).trial_id
    assert last[0] == "Next:"
    assert last[1].startswith("  prunetune pick hand ") and f"why {chosen}: the knee" in last[1]
    assert last[2].startswith(f"  prunetune export hand --trial {chosen} ") and f"hand/exports/{chosen}" in last[2]
    assert last[3].startswith("  plots: hand/plots/front.html") and (tmp_path / "hand/plots/front.html").is_file()


def test_with_nothing_feasible_the_summary_says_how_to_look_closer(tmp_path, monkeypatch):
    import io

    from rich.console import Console

    from prunetune.analysis import summarize_run

    rows = [S.trial_row("a", accuracy=0.5, latency_ms=1.0, emissions_kg=1e-5, finished_at=0)]
    directory = S.write_run(tmp_path / "far", rows, S.run_config(constraints={"max_accuracy_drop": 0.01}))
    out = io.StringIO()
    summarize_run(directory, wandb=False, console=Console(file=out, width=200))
    assert "no finished trial meets search.constraints; pick shows the closest ones" in out.getvalue()
