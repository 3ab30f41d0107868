"""The analysis verbs through the Python API: report, pick and export from a notebook."""

import pytest

import prunetune
from prunetune.errors import ConfigError


def test_report_pick_and_export_from_python(model_run, tmp_path):
    summary = prunetune.report(model_run)
    assert set(summary.front["trial_id"]) >= {summary.knee_id}
    choice = prunetune.pick(model_run, constraints={"max_latency_ms": 7.0}, prefer="accuracy")
    assert choice.found and choice.trial_id == "m1"  # the most accurate trial at 7 ms or less
    exported = prunetune.export(model_run, trial_id=choice.trial_id, out=tmp_path / "m1", wandb=False)
    assert exported.check.predictions_match and (tmp_path / "m1" / "config.json").is_file()


def test_export_without_a_trial_picks_one_and_says_when_none_fits(model_run, tmp_path):
    exported = prunetune.export(model_run, constraints={"max_latency_ms": 5.0}, out=tmp_path / "pick", wandb=False)
    assert exported.trial_id == "m2"  # the only trial at 5 ms or less
    with pytest.raises(ConfigError, match="None of the"):
        prunetune.export(model_run, constraints={"max_latency_ms": 1.0}, out=tmp_path / "none", wandb=False)
