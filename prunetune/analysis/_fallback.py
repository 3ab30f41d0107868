"""Rebuild the trials table from the Optuna study and the Ray Tune experiment.

Used when ``results.parquet`` is missing, e.g. after a search was interrupted before its
end. The Tune experiment holds each trial's reports (``result.json``, one JSON line per
``tune.report``; the last line is the final report with every metric); the Optuna study
holds one trial per Tune trial with ``values`` in the objectives' order and ``params`` =
the searched ``trial.*`` keys. Tune rows are richer (every metric) and win; Optuna trials
that no Tune row matches (by a ``trial_id`` user attribute, else by equal params) are
added with their objective values only.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pandas as pd

from prunetune import metrics as M
from prunetune.analysis import runs as R
from prunetune.config import flatten_dotted
from prunetune.errors import DataError
from prunetune.names import RESUMED_FROM_TRIAL_ATTR

# Keys Ray Tune adds to every report; kept out of the metric columns.
_TUNE_RESULT_FILE = "result.json"
_TUNE_ERROR_FILE = "error.txt"
_TUNE_ERROR_PICKLE = "error.pkl"
_TUNE_ID_ATTRS = ("trial_id", "tune_trial_id")


def trials_from_study_and_tune(run_dir: Path, config: dict, objectives: dict) -> tuple[pd.DataFrame, str]:
    tune_rows = tune_trials(run_dir / R.TUNE_DIR, run_dir, objectives)
    study_rows = study_trials(_storage(run_dir, config), objectives, study_name=_study_name(config))
    if not tune_rows and not study_rows:
        raise DataError(
            f"{run_dir}: no {R.RESULTS_FILE}, and neither a Ray Tune experiment with results "
            f"under {R.TUNE_DIR}/ nor trials in {R.STUDY_FILE}; has the search run?"
        )
    rows = tune_rows + _unmatched(study_rows, tune_rows)
    # Tune and Optuna hold only the searched keys; the others are the config's fixed values.
    fixed = flat_trial_config({"trial": config.get("trial") or {}})
    rows = [{**row, **{k: v for k, v in fixed.items() if k not in row}} for row in rows]
    sources = [name for name, found in (("Tune experiment", tune_rows), ("Optuna study", study_rows)) if found]
    return pd.DataFrame(rows), " + ".join(sources)


# --------------------------------------------------------------------------- Ray Tune


def tune_trials(tune_dir: Path, run_dir: Path, objectives: dict) -> list[dict[str, Any]]:
    """One row per Tune trial directory (one holding a ``result.json``)."""
    if not tune_dir.is_dir():
        return []
    return [
        row
        for path in sorted(tune_dir.rglob(_TUNE_RESULT_FILE))
        if (row := _tune_row(path.parent, run_dir, objectives)) is not None
    ]


def _tune_row(trial_dir: Path, run_dir: Path, objectives: dict) -> dict[str, Any] | None:
    reports = _read_json_lines(trial_dir / _TUNE_RESULT_FILE)
    params = _read_json(trial_dir / "params.json") or {}
    if not reports and not params:
        return None
    last = reports[-1] if reports else {}
    trial_id = str(last.get("trial_id") or trial_dir.name)
    error = _tune_error(trial_dir, last)
    complete = error is None and all(_finite(last.get(key)) for key in objectives)
    own_dir = run_dir / R.TRIALS_DIR / trial_id
    row: dict[str, Any] = {
        R.TRIAL_ID: trial_id,
        R.STATUS: R.TERMINATED if complete else R.ERRORED,
        R.ERROR: None if complete else (error or "the final report lacks an objective"),
        R.STARTED_AT: _started_at(reports),
        R.FINISHED_AT: last.get("timestamp"),
        R.WALL_SECONDS: last.get("time_total_s"),
        R.NODE_ID: last.get("node_ip"),
        R.TRIAL_DIR: str(own_dir if own_dir.is_dir() else trial_dir),
    }
    row.update(flat_trial_config(last.get("config") or params))
    other_kinds = (key for key in (*M.ALL_METRIC_KEYS, *M.TEACHER_KEYS) if key in last)  # a task's own metrics
    for key in dict.fromkeys((*M.FINAL_METRIC_KEYS, R.TEACHER_ACCURACY, R.TEACHER_LATENCY_MS, *other_kinds)):
        row[key] = last.get(key) if complete else None
    return row


def flat_trial_config(config: dict[str, Any]) -> dict[str, Any]:
    """``{"trial": {"latency": {"batch_size": 1}}}`` or dotted keys -> ``{"trial.latency.batch_size": 1}``."""
    flat = flatten_dotted(config)
    return {key: value for key, value in flat.items() if key.startswith(R.CONFIG_PREFIX)}


def _tune_error(trial_dir: Path, last: dict) -> str | None:
    error_file = trial_dir / _TUNE_ERROR_FILE
    if error_file.is_file():
        lines = [line for line in error_file.read_text(errors="replace").splitlines() if line.strip()]
        return lines[-1] if lines else "the trial raised an error"
    if (trial_dir / _TUNE_ERROR_PICKLE).is_file():
        return "the trial raised an error (see error.pkl)"
    return last.get(M.ERROR) or None


def _started_at(reports: list[dict]) -> float | None:
    if not reports:
        return None
    first = reports[0]
    if _finite(first.get("timestamp")) and _finite(first.get("time_total_s")):
        return float(first["timestamp"]) - float(first["time_total_s"])
    return first.get("timestamp")


# --------------------------------------------------------------------------- Optuna


def _storage(run_dir: Path, config: dict) -> str | None:
    """The study's storage URL: ``search.storage`` when set, else ``RUN_DIR/study.db`` if it exists."""
    url = (config.get("search") or {}).get("storage")
    if url:
        return str(url)
    path = run_dir / R.STUDY_FILE
    return f"sqlite:///{path.resolve()}" if path.is_file() else None


def _study_name(config: dict) -> str | None:
    return (config.get("search") or {}).get("study_name")


def study_trials(storage: str | None, objectives: dict, *, study_name: str | None = None) -> list[dict[str, Any]]:
    """One row per finished Optuna trial (running ones are left out)."""
    if storage is None:
        return []
    import optuna

    study = _load_study(storage, study_name, optuna)
    _check_directions(study, objectives, storage)
    trials = study.get_trials(deepcopy=False)
    # A trial whose worker was lost and that a resume finished has a COMPLETE copy: the copy is its row.
    replaced = {trial.user_attrs[RESUMED_FROM_TRIAL_ATTR] for trial in trials
                if RESUMED_FROM_TRIAL_ATTR in trial.user_attrs}
    return [row for trial in trials
            if trial.number not in replaced and (row := _study_row(trial, objectives, optuna))]


def _load_study(storage: str, study_name: str | None, optuna):
    """The storage's only study, or the configured one when it holds several."""
    names = optuna.get_all_study_names(storage=storage)
    if len(names) == 1:
        return optuna.load_study(study_name=names[0], storage=storage)
    if study_name in names:
        return optuna.load_study(study_name=study_name, storage=storage)
    raise DataError(f"{storage}: expected one Optuna study (or search.study_name = {study_name!r}), "
                    f"found {len(names)}: {', '.join(names) or '(none)'}")


def _check_directions(study, objectives: dict, study_file: str) -> None:
    expected = ["max" if d == "max" else "min" for d in objectives.values()]
    actual = ["max" if d.name == "MAXIMIZE" else "min" for d in study.directions]
    if expected != actual:
        raise DataError(
            f"{study_file}: the study's directions {actual} do not match search.objectives "
            f"{dict(objectives)} of config.yaml"
        )


def _study_row(trial, objectives: dict, optuna) -> dict[str, Any] | None:
    state = optuna.trial.TrialState
    if trial.state not in (state.COMPLETE, state.FAIL, state.PRUNED):
        return None
    complete = trial.state == state.COMPLETE and trial.values is not None
    tune_ids = [str(trial.user_attrs[a]) for a in _TUNE_ID_ATTRS if a in trial.user_attrs]
    trial_id = tune_ids[0] if tune_ids else f"optuna-{trial.number}"
    row: dict[str, Any] = {
        R.TRIAL_ID: trial_id,
        R.STATUS: R.TERMINATED if complete else R.ERRORED,
        R.ERROR: None if complete else f"Optuna trial {trial.number} ended {trial.state.name}",
        R.STARTED_AT: _timestamp(trial.datetime_start),
        R.FINISHED_AT: _timestamp(trial.datetime_complete),
        "_optuna_params": dict(trial.params),
        "_optuna_has_id": trial_id != f"optuna-{trial.number}",
    }
    row.update(flat_trial_config(trial.params))
    values = trial.values if complete else [None] * len(objectives)
    row.update(dict(zip(objectives, values)))
    return row


def _unmatched(study_rows: list[dict], tune_rows: list[dict]) -> list[dict]:
    """Optuna rows that describe no Tune row (same trial id, or else the same params)."""
    tune_ids = {row[R.TRIAL_ID] for row in tune_rows}
    unclaimed = list(tune_rows)
    kept = []
    for row in study_rows:
        params = row.pop("_optuna_params")
        has_id = row.pop("_optuna_has_id")
        if has_id and row[R.TRIAL_ID] in tune_ids:
            continue
        match = next((t for t in unclaimed if _same_params(params, t)), None) if not has_id else None
        if match is not None:
            unclaimed.remove(match)
            continue
        kept.append(row)
    return kept


def _same_params(params: dict[str, Any], tune_row: dict[str, Any]) -> bool:
    for key, value in params.items():
        other = tune_row.get(key)
        if isinstance(value, float) and isinstance(other, (int, float)):
            if not math.isclose(value, other, rel_tol=1e-9, abs_tol=1e-12):
                return False
        elif value != other:
            return False
    return bool(params)


# --------------------------------------------------------------------------- files


def _read_json_lines(path: Path) -> list[dict]:
    reports = []
    for line in path.read_text(errors="replace").splitlines():
        try:
            value = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line cut short by an interrupted write
        if isinstance(value, dict):
            reports.append(value)
    return reports


def _read_json(path: Path) -> dict | None:
    try:
        value = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    return value if isinstance(value, dict) else None


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _timestamp(moment) -> float | None:
    return moment.timestamp() if moment is not None else None
