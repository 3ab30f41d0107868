"""``results.parquet``: one row per finished trial, rewritten as each trial finishes.

Columns, in order: ``trial_id``, ``status`` (TERMINATED | ERROR | STOPPED), ``error``,
``started_at``, ``finished_at`` (unix seconds), ``wall_seconds``, ``node_id``,
``trial_dir``, then every ``trial.*`` key of the resolved trial configuration (dotted,
typed from the trial model), then every metric of the contract plus ``teacher_accuracy``
and ``teacher_latency_ms``, then the extra metrics methods and options may add
(``prune_seconds``, ``fill_seconds``, ...; float64, null where a trial has none), then
``stopped_at_step``. A trial the scheduler stopped early (STOPPED) holds the objectives of its
last rung (what it would have scored had it stopped there) and the step it stopped at; it is
never on the front.

Parquet cannot be appended to, so the whole table (small: one row per trial) is written
to a temporary file and renamed over the old one: a crash at any moment leaves the last
complete table, holding every trial that had finished.
"""

from __future__ import annotations

import json
import os
import shutil
import time
import types
import typing
from pathlib import Path
from typing import Any, Iterable, Mapping

import pyarrow as pa
import pyarrow.parquet as pq
import ray.exceptions
from ray.tune import Callback

from prunetune import metrics as M
from prunetune.config import Config, TrialConfig, flatten_dotted
from prunetune.metrics import (
    ALL_METRIC_KEYS,
    FINAL_METRIC_KEYS,
    OPTIONAL_METRICS,
    TEXT_METRICS,
    RETIME_RATIO,
    RETIMED,
    RETIMED_METRICS,
    TEACHER_KEYS,
    in_search,
)
from prunetune.names import (
    CHECKPOINT_DIR,
    CONFIG_PREFIX,
    ERROR,
    ERRORED,
    FINISHED_AT,
    NODE_ID,
    RESULTS_FILE,
    STARTED_AT,
    STATUS,
    STOPPED,
    TERMINATED,
    TRIAL_DIR,
    TRIAL_ID,
    TRIAL_SETTINGS,
    WALL_SECONDS,
)
from prunetune.spaces import leaf_fields
from prunetune.trainables.methods import method_metrics
from prunetune.trainables.trainable import run_trial_id, trial_settings

#: Trial settings the row reads by name.
TARGET_SPEEDUP, SPARSITY = f"{CONFIG_PREFIX}target_speedup", f"{CONFIG_PREFIX}sparsity"

BOOKKEEPING: tuple[tuple[str, pa.DataType], ...] = (
    (TRIAL_ID, pa.string()),
    (STATUS, pa.string()),
    (ERROR, pa.string()),
    (STARTED_AT, pa.float64()),
    (FINISHED_AT, pa.float64()),
    (WALL_SECONDS, pa.float64()),
    (NODE_ID, pa.string()),
    (TRIAL_DIR, pa.string()),
)
#: Metric columns: the contract, the teacher measured beside each student, and the optional extras.
METRIC_COLUMNS: tuple[str, ...] = tuple(dict.fromkeys(
    [*FINAL_METRIC_KEYS, *TEACHER_KEYS, *ALL_METRIC_KEYS, *OPTIONAL_METRICS, *method_metrics(),
     *M.UNCERTAINTY_METRICS, *M.TIME_SPLIT]))
#: Filled in by the quiet re-timing after the search (null until then).
RETIME_COLUMNS: tuple[str, ...] = (*(in_search(key) for key in RETIMED_METRICS), RETIMED, RETIME_RATIO)
#: Statuses whose rows hold metrics (a stopped trial's are those of its last rung).
MEASURED = (TERMINATED, STOPPED)


# --------------------------------------------------------------------------- schema


def trial_columns() -> list[tuple[str, pa.DataType]]:
    """Every leaf key of the trial model, dotted, with the Arrow type of its annotation."""
    return [(key, _arrow_type(annotation)) for key, annotation in leaf_fields(TrialConfig)]


def _arrow_type(annotation: Any) -> pa.DataType:
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if typing.get_origin(annotation) in (typing.Union, types.UnionType) and len(args) == 1:
        return _arrow_type(args[0])
    if typing.get_origin(annotation) is typing.Literal:
        return pa.string()
    return {bool: pa.bool_(), int: pa.int64(), float: pa.float64()}.get(annotation, pa.string())


def results_schema() -> pa.Schema:
    columns = [*BOOKKEEPING, *trial_columns(), *((key, pa.float64()) for key in METRIC_COLUMNS),
               *((key, pa.string()) for key in TEXT_METRICS),
               *((key, pa.bool_() if key == RETIMED else pa.float64()) for key in RETIME_COLUMNS),
               (M.STOPPED_AT_STEP, pa.int64())]
    return pa.schema([pa.field(name, kind, nullable=True) for name, kind in columns])


# --------------------------------------------------------------------------- rows


def trial_row(
    *,
    trial_id: str,
    status: str,
    trial: Mapping[str, Any],
    result: Mapping[str, Any] | None,
    started_at: float | None,
    finished_at: float,
    trial_dir: str,
    error: str | None = None,
) -> dict[str, Any]:
    """One row of the table (see the module docstring for the columns); ``trial`` maps dotted ``trial.*`` keys to values."""
    result = result or {}
    started = started_at if started_at is not None else result.get(STARTED_AT)
    row: dict[str, Any] = {
        TRIAL_ID: trial_id,
        STATUS: status,
        ERROR: error,
        STARTED_AT: started,
        FINISHED_AT: finished_at,
        WALL_SECONDS: finished_at - started if started is not None else None,
        NODE_ID: result.get(NODE_ID),
        TRIAL_DIR: trial_dir,
    }
    row.update(trial)
    for key in METRIC_COLUMNS:
        row[key] = float_or_none(result.get(key)) if status in MEASURED else None
    row[M.STARTUP_SECONDS] = startup_seconds(started_at, result)
    for key in TEXT_METRICS:
        row[key] = str(result[key]) if status in MEASURED and result.get(key) is not None else None
    row[M.STOPPED_AT_STEP] = M.stopped_at(result) if status == STOPPED else None
    return row


def trial_values(base: Config, sampled: Mapping[str, Any] | None,
                 result: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The dotted ``trial.*`` values of a trial: those its worker validated and ran with (its reports
    carry them), or, for a trial whose point failed validation, the base configuration's with the
    sampled ones (its row must still be written, with the reason)."""
    values = flatten_dotted(base.trial.model_dump(mode="json"), CONFIG_PREFIX)
    validated = (result or {}).get(TRIAL_SETTINGS)
    if isinstance(validated, str):
        values.update({key: value for key, value in json.loads(validated).items() if key in values})
    else:
        values.update({key: value for key, value in flatten_dotted(sampled or {}).items() if key in values})
    if values.get(TARGET_SPEEDUP) is not None:
        values[SPARSITY] = None  # a target speed-up replaces it (the result column says what was reached)
    return values


def startup_seconds(started_at: float | None, result: Mapping[str, Any]) -> float | None:
    """From Tune's start of the trial (the driver's clock) to its first line of work (the worker's
    report of when it began): the worker process and its imports."""
    began = float_or_none(result.get(STARTED_AT))
    if started_at is None or began is None:
        return None
    return max(0.0, began - started_at)


def setting(row: Mapping[str, Any], key: str, default: Any = None) -> Any:
    """A trial setting in a results row, by its key in the trial section (``latency.seq_len``)."""
    value = row.get(f"{CONFIG_PREFIX}{key}")
    return default if value is None else value


def float_or_none(value: Any) -> float | None:
    try:
        return None if value is None else float(value)
    except (TypeError, ValueError):
        return None


def rows_to_table(rows: Iterable[Mapping[str, Any]]) -> pa.Table:
    schema = results_schema()
    rows = list(rows)
    return pa.table({field.name: pa.array([row.get(field.name) for row in rows], type=field.type) for field in schema},
                    schema=schema)


def write_results(rows: Iterable[Mapping[str, Any]], path: Path) -> None:
    """Write the whole table atomically (temporary file, then rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    pq.write_table(rows_to_table(rows), temporary)
    os.replace(temporary, path)


def read_rows(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    return pq.read_table(path).to_pylist()


# --------------------------------------------------------------------------- the callback


class ResultsCallback(Callback):
    """Appends each trial to ``results.parquet`` as it finishes (terminated or errored).

    ``run_dir`` is a :class:`prunetune.cluster.RunDir`; for an object-store run directory
    the table is written locally and uploaded, with ``sync_files`` (the SQLite study).
    """

    def __init__(self, run_dir, base: Config, *, sync_files: tuple[str, ...] = ()):
        self._run_dir = run_dir
        self._base = base
        self._sync_files = sync_files
        self._rows: dict[str, dict[str, Any]] = {}

    @property
    def path(self) -> Path:
        return self._run_dir.local_path(RESULTS_FILE)

    def setup(self, **info) -> None:
        # A resumed search keeps every row written before the driver stopped.
        self._rows = {row[TRIAL_ID]: row for row in read_rows(self.path)}

    def on_trial_complete(self, iteration: int, trials: list, trial, **info) -> None:
        failure = failure_of(trial.last_result)
        self.record(trial, ending_status(trial.last_result), error=failure)

    def on_trial_error(self, iteration: int, trials: list, trial, **info) -> None:
        self.record(trial, ERRORED, error=error_reason(trial))

    def record(self, trial, status: str, *, error: str | None = None) -> None:
        trial_id = run_trial_id(trial.config, trial.trial_id)
        known = self._rows.get(trial_id)
        if known is not None and known[STATUS] != ERRORED:
            return  # a trial that errored (its node died) may finish after a resume: that row replaces it
        self._rows[trial_id] = trial_row(
            trial_id=trial_id,
            status=status,
            trial=trial_values(self._base, trial_settings(trial.config), trial.last_result),
            result=trial.last_result,
            started_at=trial.run_metadata.start_time,
            finished_at=time.time(),
            trial_dir=self._run_dir.trial_location(trial_id),
            error=error,
        )
        write_results(self._rows.values(), self.path)
        for name in (RESULTS_FILE, *self._sync_files):
            self._run_dir.push(name)
        if status == STOPPED:  # a stopped trial keeps its row and its curve, no checkpoint
            shutil.rmtree(self._run_dir.trial_output_dir(trial_id) / CHECKPOINT_DIR, ignore_errors=True)

    @property
    def rows(self) -> list[dict[str, Any]]:
        return list(self._rows.values())


class CheckpointCleanup(Callback):
    """Deletes the checkpoints Tune keeps of a trial once it has ended: a finished trial keeps its
    model and its result (in ``trials/<id>/``), nothing else."""

    def on_trial_complete(self, iteration: int, trials: list, trial, **info) -> None:
        delete_tune_checkpoints(trial)


def delete_tune_checkpoints(trial) -> None:
    """Remove ``checkpoint_*`` from the trial's folder of the Tune experiment (local or object store)."""
    import pyarrow.fs

    storage = trial.storage  # Ray's StorageContext: the experiment's file system and this trial's folder
    filesystem, folder = storage.storage_filesystem, storage.trial_fs_path
    selector = pyarrow.fs.FileSelector(folder, allow_not_found=True)
    for info in filesystem.get_file_info(selector):
        if info.type == pyarrow.fs.FileType.Directory and info.base_name.startswith("checkpoint_"):
            filesystem.delete_dir(info.path)


def ending_status(result: Mapping[str, Any] | None) -> str:
    """How a trial that Tune saw complete ended: failed, stopped early by the scheduler, or finished."""
    if failure_of(result):
        return ERRORED
    return STOPPED if M.stopped_at(dict(result or {})) is not None else TERMINATED


def failure_of(result: Mapping[str, Any] | None) -> str | None:
    """Why a trial's configuration failed, when its final report says so (else None)."""
    if result and result.get(M.FAILED):
        return str(result.get(M.ERROR) or "the trial failed")
    return None


#: How a trial's error begins when its Ray worker died under it (its node left the cluster, or the
#: process was killed) and Tune gave up on it: out of retries, or lost while a reused worker was
#: being handed to it, which Tune never retries.
WORKER_LOST = "the worker running this trial was lost"


def _is_worker_loss(error: BaseException) -> bool:
    return isinstance(error, ray.exceptions.RayActorError)


def error_reason(trial) -> str:
    """``ExceptionType: message`` of the trial's error, without Ray's wrapping and traceback.

    At ``on_trial_error`` Tune has written the error only to the driver's staging folder
    (``trial.pickled_error_file``, ``trial.error_file``); it reaches storage later.
    """
    error = _pickled_error(trial)
    if error is not None:
        # A task error wraps the trial's own exception; a dead worker (killed for memory) has none.
        cause = getattr(error, "cause", None)
        cause = cause if isinstance(cause, BaseException) else error
        reason = f"{type(cause).__name__}: {str(cause).strip()}"
        return f"{WORKER_LOST}: {reason}" if _is_worker_loss(cause) else reason
    text = _read_text(getattr(trial, "error_file", None))
    lines = [line for line in text.strip().splitlines() if line.strip() and not line.startswith("Failure #")]
    return lines[-1] if lines else "unknown error"


def _pickled_error(trial) -> BaseException | None:
    import ray.cloudpickle as cloudpickle

    path = getattr(trial, "pickled_error_file", None)
    try:
        if path and os.path.isfile(path):
            with open(path, "rb") as handle:
                return cloudpickle.load(handle)
        return trial.get_pickled_error()
    except Exception:  # an error that does not unpickle here leaves only its text
        return None


def _read_text(path: str | None) -> str:
    try:
        return Path(path).read_text() if path and os.path.isfile(path) else ""
    except OSError:
        return ""
