"""Load a search's run directory into one table of trials, its objectives and the teacher.

The table is ``results.parquet`` when the search wrote it; when it is missing (a search
that was interrupted before writing it), the rows are rebuilt from the Optuna study and
the Ray Tune experiment (see :mod:`prunetune.analysis._fallback`).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from prunetune import metrics as M
from prunetune.config import read_yaml_mapping
from prunetune.errors import ConfigError, DataError
from prunetune.metrics import TEACHER_ACCURACY, TEACHER_LATENCY_MS  # noqa: E402,F401  (re-exported)
from prunetune.names import (  # noqa: E402,F401  (re-exported: the analysis reads these columns and files)
    CONFIG_FILE,
    CONFIG_PREFIX,
    ERROR,
    ERRORED,
    EXPORTS_DIR,
    FINISHED_AT,
    MODEL_DIR,
    NODE_ID,
    PARETO_FILE,
    PLOTS_DIR,
    RESULTS_FILE,
    STARTED_AT,
    STATUS,
    STOPPED,
    STUDY_FILE,
    TEACHER_FILE,
    TERMINATED,
    TRIAL_DIR,
    TRIAL_ID,
    TRIALS_DIR,
    TUNE_DIR,
    WALL_SECONDS,
)


@dataclass(frozen=True)
class TeacherReference:
    """The dense teacher as a point of comparison, in the same units as the trials.

    * ``accuracy``: the teacher's accuracy on the same evaluation split (teacher.json);
    * ``latency_ms``: the median of the trials' ``teacher_latency_ms``, each measured in
      the same process and with the same settings as that trial's student, so it is
      comparable with the students' latencies (teacher.json's own figure when no trial
      measured it);
    * ``emissions_kg``: what fine-tuning the teacher once emitted (teacher.json). It is
      a one-off cost shared by the whole search, shown as a marker, not a trial's cost.
    """

    metrics: dict[str, float]
    model_dir: str | None = None

    def get(self, key: str) -> float:
        value = self.metrics.get(key)
        return float("nan") if value is None else float(value)


@dataclass(frozen=True)
class RunData:
    """Everything the analysis needs from one run directory."""

    run_dir: Path
    config: dict[str, Any]
    objectives: dict[str, M.Direction]
    trials: pd.DataFrame
    teacher: TeacherReference
    source: str
    constraints: dict[str, float] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.run_dir.resolve().name

    @property
    def finished(self) -> pd.DataFrame:
        """Trials that ended normally with every objective measured: the only ones on fronts."""
        table = self.trials[self.trials[STATUS] == TERMINATED]
        values = table[list(self.objectives)].to_numpy(dtype=float)
        return table[np.isfinite(values).all(axis=1)]

    @property
    def errored(self) -> pd.DataFrame:
        """Trials that did not finish, except those the scheduler stopped early."""
        return self.trials[~self.trials[STATUS].isin((TERMINATED, STOPPED))]

    @property
    def stopped(self) -> pd.DataFrame:
        """Trials the scheduler stopped early: their values are those of a rung, never on a front."""
        return self.trials[self.trials[STATUS] == STOPPED]

    @property
    def config_columns(self) -> list[str]:
        return [c for c in self.trials.columns if c.startswith(CONFIG_PREFIX)]

    @property
    def searched_columns(self) -> list[str]:
        """The config keys the search varied (``space``), else every ``trial.*`` column that varies."""
        space = self.config.get("space") or {}
        columns = [c for c in space if c in self.trials.columns]
        if columns:
            return columns
        return [c for c in self.config_columns if self.trials[c].astype(str).nunique() > 1]

    def trial(self, trial_id: str) -> pd.Series:
        rows = self.trials[self.trials[TRIAL_ID] == str(trial_id)]
        if rows.empty:
            raise ConfigError(
                f"--trial {trial_id!r}: no such trial in {self.run_dir}; "
                f"trials: {', '.join(self.trials[TRIAL_ID].astype(str)) or '(none)'}"
            )
        return rows.iloc[0]

    def trial_dir(self, trial_id: str) -> Path:
        """The trial's directory, inside this run directory: a run directory that was copied or moved
        reads its own files, never those at a path the search recorded."""
        self.trial(trial_id)  # an unknown id is refused, naming the known ones
        return self.run_dir / TRIALS_DIR / str(trial_id)

    def model_dir(self, trial_id: str) -> Path:
        """Where the trial saved its compacted model (``trials/<id>/model``)."""
        model_dir = self.trial_dir(trial_id) / MODEL_DIR
        if not (model_dir / "config.json").is_file():
            raise DataError(f"trial {trial_id!r}: no saved model ({MODEL_DIR}/config.json) in "
                            f"{self.trial_dir(trial_id)}")
        return model_dir


# --------------------------------------------------------------------------- loading


def load_run(run_dir: str | Path) -> RunData:
    """Read ``run_dir`` (config, teacher and trials) and check it has what a front needs."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise DataError(f"run directory {str(run_dir)!r} does not exist")
    config = read_config(run_dir)
    objectives = objectives_of(config)
    trials, source = _read_trials(run_dir, config, objectives)
    trials = _normalise_table(trials, objectives, run_dir)
    teacher = teacher_reference(read_teacher(run_dir), trials)
    constraints = dict((config.get("search") or {}).get("constraints") or {})
    return RunData(run_dir, config, objectives, trials, teacher, source, constraints)


def read_config(run_dir: Path) -> dict[str, Any]:
    path = run_dir / CONFIG_FILE
    if not path.is_file():
        raise DataError(f"{path}: missing; is {str(run_dir)!r} a prunetune run directory?")
    return read_yaml_mapping(path, error=DataError)


def objectives_of(config: dict[str, Any]) -> dict[str, M.Direction]:
    """``search.objectives`` of the config (metric key -> "max"/"min"), validated."""
    objectives = (config.get("search") or {}).get("objectives") or dict(M.DEFAULT_OBJECTIVES)
    if isinstance(objectives, (list, tuple)):  # a list of keys takes each metric's own direction
        objectives = {key: M.METRIC_DIRECTIONS.get(key, "?") for key in objectives}
    problems = []
    for key, direction in objectives.items():
        if key not in M.METRIC_DIRECTIONS:
            problems.append(f"search.objectives.{key}: unknown metric; known: {', '.join(M.ALL_METRIC_KEYS)}")
        elif direction not in ("max", "min"):
            problems.append(f"search.objectives.{key} = {direction!r}: expected 'max' or 'min'")
    if problems:
        raise ConfigError(problems, source=CONFIG_FILE)
    return dict(objectives)


def read_teacher(run_dir: Path) -> dict[str, Any]:
    path = run_dir / TEACHER_FILE
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}: not valid JSON: {exc}") from exc


def teacher_reference(teacher: dict[str, Any], trials: pd.DataFrame) -> TeacherReference:
    """The teacher's metrics (see :class:`TeacherReference` for where each comes from)."""
    values = {key: teacher.get(key) for key in M.ALL_METRIC_KEYS if _is_number(teacher.get(key))}
    finished = trials[trials[STATUS] == TERMINATED]
    if not _is_number(values.get(M.ACCURACY)) and TEACHER_ACCURACY in finished:
        values[M.ACCURACY] = _median(finished[TEACHER_ACCURACY])
    if TEACHER_LATENCY_MS in finished and finished[TEACHER_LATENCY_MS].notna().any():
        values[M.LATENCY_MS] = _median(finished[TEACHER_LATENCY_MS])
    # By definition of the metrics, the dense model is their zero point.
    values.update({M.ACCURACY_DROP: 0.0, M.SPEEDUP: 1.0, M.SPARSITY: 0.0, M.HEADS_PRUNED: 0.0, M.FFN_KEPT: 1.0})
    values.update(_teacher_on_test(finished))
    clean = {k: float(v) for k, v in values.items() if _is_number(v)}
    return TeacherReference(clean, model_dir=teacher.get("model_dir"))


def _teacher_on_test(finished: pd.DataFrame) -> dict[str, float]:
    """The teacher's held-out figures, recorded beside each trial evaluated on the test split."""
    values = {}
    for headline in dict.fromkeys(M.headline_metric(kind) for kind in M.TASK_METRICS):
        column = M.held_out_key(M.teacher_key(headline))
        if column in finished and finished[column].notna().any():
            values[M.held_out_key(headline)] = _median(finished[column])
            values[M.held_out_key(M.drop_key(headline))] = 0.0
    return values


def _read_trials(run_dir: Path, config: dict, objectives: dict) -> tuple[pd.DataFrame, str]:
    path = run_dir / RESULTS_FILE
    if path.is_file():
        try:
            return pd.read_parquet(path), RESULTS_FILE
        except Exception as exc:  # pyarrow raises several unrelated types for a bad file
            raise DataError(f"{path}: cannot be read as Parquet: {exc}") from exc
    from prunetune.analysis._fallback import trials_from_study_and_tune

    return trials_from_study_and_tune(run_dir, config, objectives)


def _normalise_table(table: pd.DataFrame, objectives: dict, run_dir: Path) -> pd.DataFrame:
    """Check the columns a front needs, and order rows by when they finished."""
    missing = [c for c in (TRIAL_ID, STATUS, *objectives) if c not in table.columns]
    if missing:
        raise DataError(
            f"{run_dir / RESULTS_FILE}: missing column(s) {', '.join(missing)}; "
            f"columns: {', '.join(map(str, table.columns))}"
        )
    table = table.copy()
    table[TRIAL_ID] = table[TRIAL_ID].astype(str)
    for key in M.ALL_METRIC_KEYS:
        if key in table:
            table[key] = pd.to_numeric(table[key], errors="coerce")
    if FINISHED_AT in table and table[FINISHED_AT].notna().any():
        table = table.sort_values(FINISHED_AT, kind="stable", na_position="last")
    return table.reset_index(drop=True)


def _is_number(value: Any) -> bool:
    numeric = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)
    return numeric and math.isfinite(value)


def _median(series: pd.Series) -> float:
    values = pd.to_numeric(series, errors="coerce").dropna()
    return float(values.median()) if len(values) else float("nan")
