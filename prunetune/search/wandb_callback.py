"""Every trial of a search is a W&B run: its configuration, its curves and its final metrics.

A Ray Tune :class:`~ray.tune.Callback` that runs in the search driver and keeps one W&B run
per live trial (wandb's ``reinit="create_new"`` lets one process hold several runs).
Ray's own ``WandbLoggerCallback`` starts one Ray actor (and one wandb process) per trial
and insists on an API key unless ``WANDB_MODE`` is set in the environment; logging from
the driver needs neither, and keeps the offline run folders in ``RUN_DIR/wandb/``.

Runs are grouped by search (``group`` = the run directory's name), named by the Tune
trial id (the ``trial_id`` column of ``results.parquet``), and have a stable id so that a
resumed trial continues its run.
"""

from __future__ import annotations

import logging
import math
from numbers import Real
from pathlib import Path
from typing import Any

from ray.tune import Callback

from prunetune import metrics as M
from prunetune.analysis.wandb_settings import (
    WandbSettings,
    config_dict,
    run_id,
    wandb_settings,
)
from prunetune.config import flatten_dotted
from prunetune.names import CONFIG_PREFIX, STATUS
from prunetune.search._results import ending_status
from prunetune.trainables.trainable import run_trial_id, trial_settings

logger = logging.getLogger(__name__)

# Keys Ray Tune adds to every report that say nothing about the model.
_TUNE_BOOKKEEPING = frozenset({
    "timestamp", "time_this_iter_s", "time_total_s", "time_since_restore", "iterations_since_restore",
    "training_iteration", "pid", "node_ip", "hostname", "date", "experiment_tag", "trial_id",
    "done", "should_checkpoint", "checkpoint_dir_name",
})
_STEP_KEY = "training_iteration"


def wandb_callbacks(config: Any, run_dir: str | Path, *, enabled: bool = True) -> list[Callback]:
    """``[WandbTrialCallback]`` for the search in ``run_dir``, or ``[]`` when W&B is off.

    Off means ``--no-wandb`` (``enabled=False``), ``output.wandb.enabled: false`` or
    ``output.wandb.mode: disabled`` (see :mod:`prunetune.analysis.wandb_settings`).
    """
    settings = wandb_settings(config, run_dir, enabled=enabled)
    if not settings.enabled:
        return []
    return [WandbTrialCallback(settings, base_config=_trial_section(config))]


class WandbTrialCallback(Callback):
    """One W&B run per Tune trial, logged from the driver process."""

    def __init__(self, settings: WandbSettings, *, base_config: dict[str, Any] | None = None):
        self.settings = settings
        self.base_config = flatten_dotted(base_config or {}, CONFIG_PREFIX)
        self._runs: dict[str, Any] = {}

    # Tune pickles its callbacks with the experiment; live W&B runs do not pickle.
    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_runs": {}}

    def on_trial_start(self, iteration: int, trials: list, trial, **info) -> None:
        self._start(trial)

    def on_trial_result(self, iteration: int, trials: list, trial, result: dict, **info) -> None:
        run = self._runs.get(_trial_id(trial)) or self._start(trial)
        curves = loggable(result)
        if curves:
            run.log(curves, step=_step(result, run))

    def on_trial_complete(self, iteration: int, trials: list, trial, **info) -> None:
        last = getattr(trial, "last_result", None) or {}
        failed = bool(last.get(M.FAILED))
        self._finish(trial, status=ending_status(last), exit_code=1 if failed else 0)

    def on_trial_error(self, iteration: int, trials: list, trial, **info) -> None:
        self._finish(trial, status="ERROR", exit_code=1)

    def on_experiment_end(self, trials: list, **info) -> None:
        for trial_id in list(self._runs):
            self._runs.pop(trial_id).finish()

    def _start(self, trial):
        import wandb

        run = self._runs.get(_trial_id(trial))
        if run is None:
            config = {**self.base_config, **flatten_dotted(trial_settings(trial.config or {}))}
            run = wandb.init(**self.settings.init_kwargs(
                name=_trial_id(trial),
                job_type="trial",
                run_id=run_id(self.settings.group, _trial_id(trial)),
                config=config,
            ))
            self._runs[_trial_id(trial)] = run
        return run

    def _finish(self, trial, *, status: str, exit_code: int) -> None:
        run = self._runs.pop(_trial_id(trial), None)
        if run is None:
            return
        final = getattr(trial, "last_result", None) or {}
        for key in M.ALL_METRIC_KEYS:
            if _is_number(final.get(key)):
                run.summary[key] = final[key]
        run.summary[STATUS] = status
        if M.stopped_at(final) is not None:  # its curve ends at the rung; the summary says so
            run.summary[M.STOPPED_AT_STEP] = M.stopped_at(final)
        error = _error_text(trial) if exit_code else None
        if error:
            run.summary[M.ERROR] = error
        run.finish(exit_code=exit_code)


def loggable(result: dict[str, Any]) -> dict[str, float]:
    """The numeric, model-related values of a Tune report (curves and final metrics)."""
    return {
        key: value
        for key, value in result.items()
        if key not in _TUNE_BOOKKEEPING and key != "config" and _is_number(value)
    }


def _step(result: dict[str, Any], run) -> int | None:
    # training_iteration grows by one per tune.report: a monotonic W&B step.
    step = result.get(_STEP_KEY)
    if not _is_number(step) or step < run.step:
        return None
    return int(step)


def _trial_id(trial) -> str:
    """The run's id of a Tune trial: a trial a resume runs on keeps its own, and its W&B run."""
    return run_trial_id(trial.config or {}, trial.trial_id)


def _trial_section(config: Any) -> dict[str, Any]:
    return dict(config_dict(config).get("trial") or {})


def _error_text(trial) -> str | None:
    reported = (getattr(trial, "last_result", None) or {}).get(M.ERROR)
    if reported:  # a configuration failure, reported by the trial itself: its whole reason
        return str(reported)
    for attribute in ("error_message", "error_msg"):
        text = getattr(trial, attribute, None)
        if text:
            return str(text).strip().splitlines()[-1][:500]
    return None


def _is_number(value: Any) -> bool:
    return isinstance(value, Real) and not isinstance(value, bool) and math.isfinite(float(value))
