"""The terminal view of a search: one readable line per event instead of Ray's trial table.

Each line says how many trials finished, run, failed and were stopped early by the
scheduler, the best value so far of each objective, and the size of the current Pareto
front (finished trials only)::

    [ 7/16]  done 4  running 2  failed 1  stopped 1 | accuracy 0.912 ↑  latency_ms 3.41 ↓ | front 3 | 4m12s
"""

from __future__ import annotations

import sys
import time
from typing import Any, Mapping, TextIO

import numpy as np
from ray.tune import Callback

from prunetune import metrics as M
from prunetune.names import STATUS, STOPPED, TERMINATED, TRIAL_ID
from prunetune.pareto import nondominated_mask
from prunetune.search._optuna import objective_values
from prunetune.search._results import error_reason, failure_of, startup_seconds
from prunetune.trainables.trainable import run_trial_id, trial_settings

ARROWS = {"max": "↑", "min": "↓"}


def _with_startup(trial) -> dict[str, Any]:
    """The trial's last report with the driver's view of its start-up."""
    result = dict(trial.last_result or {})
    metadata = getattr(trial, "run_metadata", None)
    result[M.STARTUP_SECONDS] = startup_seconds(getattr(metadata, "start_time", None), result)
    return result


def time_split_text(result: Mapping[str, Any] | None) -> str:
    """`` after 52s: data 1.2s, teacher 2.0s, ...``: where a trial's time went, as its report says."""
    parts = [(label, (result or {}).get(key)) for key, label in M.TIME_SPLIT_LABELS.items()]
    known = [(label, float(value)) for label, value in parts if isinstance(value, (int, float)) and value == value]
    if not known:
        return ""
    return " after " + ", ".join(f"{label} {value:.1f}s" for label, value in known)


class ProgressCallback(Callback):
    """Prints progress lines; ``verbosity`` 0 prints nothing (the final table still prints)."""

    def __init__(self, objectives: Mapping[str, str], *, num_trials: int | None, verbosity: int = 1,
                 initial: list[Mapping[str, Any]] = (), stream: TextIO | None = None, budget=None):
        self._objectives = dict(objectives)
        self._num_trials = num_trials
        self._budget = budget  # search.time_budget (a TimeBudget): each line says what is left
        self._verbosity = verbosity
        self._stream = stream
        self._started = time.monotonic()
        self._running: set[str] = set()
        self._failed: set[str] = set()
        self._stopped: set[str] = set()
        self._finished: dict[str, list[float] | None] = {}
        for row in initial:  # trials recorded before a resume
            status = row.get(STATUS)
            self._count(str(row[TRIAL_ID]), row if status == TERMINATED else None, stopped=status == STOPPED)

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_stream"] = None  # streams do not pickle (Tune pickles callbacks with the experiment)
        return state

    # ------------------------------------------------------------------ Tune hooks

    def on_trial_start(self, iteration: int, trials: list, trial, **info) -> None:
        trial_id = run_trial_id(trial.config, trial.trial_id)
        self._running.add(trial_id)
        self._print(f"started {trial_id} {_short_config(trial_settings(trial.config))}")

    def on_trial_complete(self, iteration: int, trials: list, trial, **info) -> None:
        trial_id = run_trial_id(trial.config, trial.trial_id)
        step = M.stopped_at(trial.last_result)
        self._count(trial_id, trial.last_result, stopped=step is not None)
        failure = failure_of(trial.last_result)
        if step is not None:
            self._print(f"stopped {trial_id} at step {step}{time_split_text(_with_startup(trial))}")
            return
        if failure:
            self._print(f"failed {trial_id}: {failure}")
            return
        values = self._finished.get(trial_id)
        self._print(f"{'finished' if values else 'no metrics'} {trial_id}{time_split_text(_with_startup(trial))}")

    def on_trial_error(self, iteration: int, trials: list, trial, **info) -> None:
        trial_id = run_trial_id(trial.config, trial.trial_id)
        self._count(trial_id, None)
        self._print(f"failed {trial_id}: {error_reason(trial)}")

    # ------------------------------------------------------------------ state

    def _count(self, trial_id: str, result: Mapping[str, Any] | None, *, stopped: bool = False) -> None:
        """A stopped trial's rung values are not results: it counts apart, off the front. A trial
        counted before a resume (failed with its node) is counted again by how it ends now."""
        self._running.discard(trial_id)
        self._failed.discard(trial_id)
        if stopped:
            self._stopped.add(trial_id)
            self._finished[trial_id] = None
            return
        values = objective_values(result, list(self._objectives))
        self._finished[trial_id] = values
        if values is None:
            self._failed.add(trial_id)

    def summary(self) -> str:
        done = len(self._finished) - len(self._failed) - len(self._stopped)
        planned = f"/{self._num_trials}" if self._num_trials is not None else ""
        head = f"[{len(self._finished):>2}{planned}]  done {done}  running {len(self._running)}  failed {len(self._failed)}"
        if self._stopped:
            head += f"  stopped {len(self._stopped)}"
        clock = _elapsed(time.monotonic() - self._started)
        if self._budget is not None:
            clock += f", {self._budget.describe()}"
        return f"{head} | {self._best_line()} | front {self.front_size()} | {clock}"

    def _successes(self) -> np.ndarray:
        rows = [v for v in self._finished.values() if v is not None]
        return np.array(rows, dtype=float).reshape(len(rows), len(self._objectives))

    def _best_line(self) -> str:
        values = self._successes()
        parts = []
        for index, (key, mode) in enumerate(self._objectives.items()):
            best = "-" if not len(values) else _format((values[:, index].max() if mode == "max" else values[:, index].min()))
            parts.append(f"{key} {best} {ARROWS[mode]}")
        return "  ".join(parts)

    def front_size(self) -> int:
        values = self._successes()
        return int(nondominated_mask(values, list(self._objectives.values())).sum()) if len(values) else 0

    def _print(self, event: str) -> None:
        if self._verbosity <= 0:
            return
        stream = self._stream or sys.stdout
        print(f"{self.summary()}  ({event})", file=stream, flush=True)


def _format(value: float) -> str:
    return f"{value:.3g}" if abs(value) < 1e-2 or abs(value) >= 1e4 else f"{value:.3f}"


def _elapsed(seconds: float) -> str:
    minutes, seconds = divmod(int(seconds), 60)
    return f"{minutes}m{seconds:02d}s"


def _short_config(config: Mapping[str, Any]) -> str:
    parts = []
    for key, value in sorted(config.items()):
        value = _format(value) if isinstance(value, float) else value
        parts.append(f"{key.removeprefix('trial.')}={value}")
    return " ".join(parts)
