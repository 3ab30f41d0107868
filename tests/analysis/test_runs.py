"""Loading a run directory: results.parquet, or the Optuna study and the Tune experiment."""

from __future__ import annotations

import json
from pathlib import Path

import optuna
import pandas as pd
import pytest

from prunetune import metrics as M
from prunetune.analysis import analyse, load_run
from prunetune.analysis import runs as R
from prunetune.errors import ConfigError, DataError
from prunetune.names import RESUMED_FROM_TRIAL_ATTR
from tests.analysis import synthetic as S

PARAMS = {"trial.sparsity": optuna.distributions.FloatDistribution(0.0, 0.9),
          "trial.precision": optuna.distributions.CategoricalDistribution(["fp32", "bf16"])}
# (sparsity, precision, accuracy, latency, emissions)
STUDY_TRIALS = [(0.2, "fp32", 0.93, 9.0, 5e-5), (0.5, "bf16", 0.90, 6.0, 4e-5), (0.8, "fp32", 0.80, 7.0, 6e-5)]


def _study(run_dir: Path, *, tune_ids: bool = False) -> optuna.Study:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(study_name="prunetune", storage=f"sqlite:///{run_dir / R.STUDY_FILE}",
                                directions=["maximize", "minimize", "minimize"])
    for i, (sparsity, precision, *values) in enumerate(STUDY_TRIALS):
        attrs = {"tune_trial_id": f"tune_{i}"} if tune_ids else {}
        study.add_trial(optuna.trial.create_trial(params={"trial.sparsity": sparsity, "trial.precision": precision},
                                                  distributions=PARAMS, values=values, user_attrs=attrs))
    study.add_trial(optuna.trial.create_trial(params={"trial.sparsity": 0.3, "trial.precision": "fp32"},
                                              distributions=PARAMS, state=optuna.trial.TrialState.FAIL))
    return study


def _tune_trial(experiment: Path, name: str, trial_id: str, config: dict, reports: list[dict],
                error: str | None = None):
    trial_dir = experiment / name
    trial_dir.mkdir(parents=True)
    lines = [json.dumps({"trial_id": trial_id, "training_iteration": i + 1, "timestamp": 2000.0 + i,
                         "time_total_s": 10.0 * (i + 1), "config": config, **report})
             for i, report in enumerate(reports)]
    (trial_dir / "result.json").write_text("\n".join(lines) + "\n")
    (trial_dir / "params.json").write_text(json.dumps(config))
    if error:
        (trial_dir / "error.txt").write_text(f"Traceback (most recent call last):\n  ...\n{error}\n")


def test_results_parquet_is_the_source(run_dir):
    run = load_run(run_dir)
    assert run.source == R.RESULTS_FILE
    assert run.objectives == S.OBJECTIVES
    assert run.searched_columns == ["trial.sparsity", "trial.block_size", "trial.precision"]
    assert run.trials[R.FINISHED_AT].is_monotonic_increasing
    assert run.constraints == {"max_accuracy_drop": 0.05}


def test_missing_run_dir_and_columns_are_named(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        load_run(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="config.yaml: missing"):
        load_run(tmp_path / "empty")
    rows = [S.trial_row("t0", accuracy=0.9, latency_ms=5, emissions_kg=1e-5)]
    directory = S.write_run(tmp_path / "cols", rows)
    pd.DataFrame(rows).drop(columns=[M.LATENCY_MS]).to_parquet(directory / R.RESULTS_FILE)
    with pytest.raises(DataError, match="missing column.*latency_ms"):
        load_run(directory)


def test_unknown_objective_is_a_config_error(tmp_path):
    directory = S.write_run(tmp_path / "bad", [], S.run_config(objectives={"accuracy": "max", "speed": "max"}))
    with pytest.raises(ConfigError, match="search.objectives.speed: unknown metric"):
        load_run(directory)


def test_unknown_trial_lists_the_trials(run_dir):
    with pytest.raises(ConfigError, match=r"--trial 'nope': no such trial.*t000, t001"):
        load_run(run_dir).trial("nope")


def test_without_results_the_optuna_study_gives_the_trials(tmp_path):
    directory = S.write_run(tmp_path / "study-only", [])
    _study(directory)
    run = load_run(directory)
    assert run.source == "Optuna study"
    assert run.trials[R.STATUS].tolist() == [R.TERMINATED] * 3 + [R.ERRORED]
    assert run.trials[R.TRIAL_ID].tolist() == ["optuna-0", "optuna-1", "optuna-2", "optuna-3"]
    assert run.trials["trial.precision"].tolist()[:3] == ["fp32", "bf16", "fp32"]
    analysis = analyse(run)
    # optuna-2 (0.80, 7 ms, 6e-5) is dominated by optuna-1 (0.90, 6 ms, 4e-5).
    assert set(analysis.front[R.TRIAL_ID]) == {"optuna-0", "optuna-1"}


def test_a_trial_finished_by_a_resume_is_one_row_of_the_study(tmp_path):
    directory = S.write_run(tmp_path / "study-only", [])
    study = _study(directory)
    lost = study.trials[-1]  # FAIL: Tune lost its worker
    study.add_trial(optuna.trial.create_trial(params=lost.params, distributions=PARAMS, values=[0.85, 5.0, 3e-5],
                                              user_attrs={RESUMED_FROM_TRIAL_ATTR: lost.number}))
    trials = load_run(directory).trials
    assert trials[R.TRIAL_ID].tolist() == ["optuna-0", "optuna-1", "optuna-2", "optuna-4"]
    assert trials[R.STATUS].tolist() == [R.TERMINATED] * 4


def test_study_directions_must_match_the_objectives(tmp_path):
    config = S.run_config(objectives={"accuracy": "max", "latency_ms": "min"})
    directory = S.write_run(tmp_path / "mismatch", [], config)
    _study(directory)
    with pytest.raises(DataError, match="directions"):
        load_run(directory)


def test_tune_experiment_enriches_the_study(tmp_path):
    directory = S.write_run(tmp_path / "tune-and-study", [])
    _study(directory, tune_ids=True)
    experiment = directory / R.TUNE_DIR / "search"
    for i, (sparsity, precision, accuracy, latency, emissions) in enumerate(STUDY_TRIALS[:2]):
        final = S.trial_row(f"tune_{i}", accuracy=accuracy, latency_ms=latency, emissions_kg=emissions,
                            sparsity=sparsity)
        metrics = {k: final[k] for k in (*M.FINAL_METRIC_KEYS, R.TEACHER_ACCURACY, R.TEACHER_LATENCY_MS)}
        config = {"trial": {"sparsity": sparsity, "precision": precision}}
        _tune_trial(experiment, f"trainable_tune_{i}", f"tune_{i}", config,
                    [{M.STEP: 10, M.TRAIN_LOSS: 1.2}, {M.STEP: 20, **metrics, M.DONE: True}])
    _tune_trial(experiment, "trainable_tune_9", "tune_9", {"trial": {"sparsity": 0.7}}, [{M.STEP: 10}],
                error="TrialError: out of memory")
    run = load_run(directory)
    assert run.source == "Tune experiment + Optuna study"
    rows = run.trials.set_index(R.TRIAL_ID)
    # Tune rows carry every metric; the Optuna-only trials keep their objectives.
    assert rows.loc["tune_1", M.SPEEDUP] == pytest.approx(12.0 / 6.0)
    assert rows.loc["tune_1", "trial.sparsity"] == 0.5
    assert rows.loc["tune_9", R.STATUS] == R.ERRORED and "out of memory" in rows.loc["tune_9", R.ERROR]
    assert rows.loc["tune_2", M.ACCURACY] == 0.80 and pd.isna(rows.loc["tune_2", M.SPEEDUP])
    assert sorted(rows.index) == ["optuna-3", "tune_0", "tune_1", "tune_2", "tune_9"]
    assert rows.loc["tune_0", R.WALL_SECONDS] == 20.0


def test_tune_rows_match_study_trials_by_params_without_ids(tmp_path):
    directory = S.write_run(tmp_path / "params-match", [])
    _study(directory)
    sparsity, precision, accuracy, latency, emissions = STUDY_TRIALS[0]
    final = S.trial_row("abc_00000", accuracy=accuracy, latency_ms=latency, emissions_kg=emissions)
    _tune_trial(directory / R.TUNE_DIR / "search", "trainable_abc_00000", "abc_00000",
                {"trial.sparsity": sparsity, "trial.precision": precision},
                [{k: final[k] for k in M.FINAL_METRIC_KEYS}])
    ids = load_run(directory).trials[R.TRIAL_ID].tolist()
    assert "abc_00000" in ids and "optuna-0" not in ids and "optuna-1" in ids


def test_nothing_to_load_says_what_was_looked_for(tmp_path):
    directory = S.write_run(tmp_path / "nothing", [])
    with pytest.raises(DataError, match="no results.parquet.*Ray Tune.*study.db"):
        load_run(directory)


def test_model_dir_is_found_or_named(model_run):
    run = load_run(model_run)
    assert run.model_dir("m0") == model_run / "trials" / "m0" / "model"
    with pytest.raises(DataError, match="m_err.*no saved model"):
        run.model_dir("m_err")
