"""The Ray Tune trainable: one trial of a search, wrapping ``run_trial``.

For each sampled point it builds the trial's configuration (the base configuration with
the sampled ``trial.*`` values and the run directory's teacher cache), restores the last
checkpoint Tune holds (or, for a trial a resume runs on, the one the resume found), runs
the trial, and reports through ``ray.tune.report`` with the
node it ran on. The trial's final report is held back until ``run_trial`` has written
``result.json`` and the model (and, for an object-store run directory, uploaded them),
so that a reported final result always has its files. A trial that raises fails alone:
Tune records the error and the search goes on.

The trainable does not know where files live; the search hands it a *workspace* (the
run directory) with the few operations below.
"""

from __future__ import annotations

import math
import shutil
import time
from pathlib import Path
from typing import Any, Callable, Mapping, Protocol, Sequence

from prunetune import metrics as M
from prunetune.cluster.energy import ledger_meter_factory
from prunetune.config import Config, flatten_dotted
from prunetune.errors import PrunetuneError, TrialError
from prunetune.names import (
    CHECKPOINT_DIR,
    CONFIG_PREFIX,
    NODE_ID,
    RESUMED_CHECKPOINT,
    RESUMED_TRIAL,
    STARTED_AT,
    TRIAL_DIR,
    TRIAL_SETTINGS,
)

#: ``run_trial``'s shape: ``fn(config, *, output_dir, report, progress, energy_meter) -> final metrics``.
TrialFunction = Callable[..., dict[str, Any]]


class TrialWorkspace(Protocol):
    """Where a trial reads the teacher and writes its files (``prunetune.cluster.RunDir``)."""

    location: str  # the run directory, as the user names it (one per search)

    def trial_output_dir(self, trial_id: str) -> Path: ...

    def trial_location(self, trial_id: str) -> str: ...

    def teacher_cache_dir(self) -> str: ...

    def publish_trial(self, trial_id: str) -> None: ...

    def finished_result(self, trial_id: str) -> dict[str, Any] | None: ...


def make_trainable(
    base: Config,
    workspace: TrialWorkspace,
    *,
    trial_fn: TrialFunction | None = None,
    objectives: Sequence[str] = (),
) -> Callable[[dict[str, Any]], None]:
    """A Tune function trainable running ``trial_fn`` (default: ``run_trial``) on each sampled point."""

    def prunetune_trial(sampled: dict[str, Any]) -> None:
        run_tune_trial(base, workspace, sampled, trial_fn=trial_fn or _run_trial(), objectives=objectives)

    return prunetune_trial


def _run_trial() -> TrialFunction:
    # Imported in the worker only: the driver never needs torch for the trainable.
    from prunetune.trainables.trial import run_trial

    return run_trial


def run_tune_trial(
    base: Config,
    workspace: TrialWorkspace,
    sampled: Mapping[str, Any],
    *,
    trial_fn: TrialFunction,
    objectives: Sequence[str] = (),
) -> None:
    """The body of the trainable (inside a Tune session)."""
    import ray
    from ray import tune

    trial_id = run_trial_id(sampled, tune.get_context().get_trial_id())
    reporter = TuneReporter(node_id=ray.get_runtime_context().get_node_id(),
                            trial_dir=workspace.trial_location(trial_id))
    finished = workspace.finished_result(trial_id)
    if finished is not None and not M.missing_final_keys(finished):
        # It finished before the driver stopped: report it again rather than re-run it.
        check_final(finished, objectives)
        reporter.carry_settings(_worker_config(base, workspace, trial_settings(sampled)))
        reporter.send(finished, None)
        return
    output_dir = workspace.trial_output_dir(trial_id)
    restore_checkpoint(tune.get_checkpoint() or resumed_checkpoint(sampled), output_dir / CHECKPOINT_DIR)
    reporter.send({}, None)  # the node and start time reach the driver even if the trial fails
    try:
        final = _run(base, workspace, trial_settings(sampled), trial_id, output_dir, reporter, trial_fn=trial_fn,
                     objectives=objectives)
    except Exception as error:
        if not is_configuration_failure(error):
            raise  # the infrastructure failed: Tune retries the trial from its last checkpoint
        reporter.send(failure_report(error), None)
        return
    workspace.publish_trial(trial_id)
    reporter.send(final, None)


def _run(base: Config, workspace: TrialWorkspace, sampled: Mapping[str, Any], trial_id: str, output_dir: Path,
         reporter: "TuneReporter", *, trial_fn: TrialFunction, objectives: Sequence[str]) -> dict[str, Any]:
    config = _worker_config(base, workspace, sampled)
    reporter.carry_settings(config)
    emissions = config.trial.emissions
    meter = ledger_meter_factory(trial_id, search_key=workspace.location, country_iso_code=emissions.country_iso_code,
                                 interval_s=emissions.measure_power_secs)
    from prunetune.cluster.measure_node import measurer_of

    measurer = measurer_of(config)
    options = {"measurer": measurer} if measurer is not None else {}  # a plain trial function takes none
    result = trial_fn(config, output_dir=output_dir, report=reporter, progress=False, energy_meter=meter, **options)
    final = reporter.held_final or result
    check_final(final, objectives)
    return final


def _worker_config(base: Config, workspace: TrialWorkspace, sampled: Mapping[str, Any]) -> Config:
    """The trial's configuration as this worker runs it: the sampled point, validated, with the
    run's teacher cache and the CPUs Tune gave the trial."""
    return with_latency_threads(trial_config(base, sampled, teacher_cache_dir=workspace.teacher_cache_dir()),
                                _cpus_given())


def validated_settings(config: Config) -> str:
    """The dotted ``trial.*`` values of a validated configuration, as a report carries them (JSON)."""
    import json

    return json.dumps(flatten_dotted(config.trial.model_dump(mode="json"), CONFIG_PREFIX))


def run_trial_id(sampled: Mapping[str, Any], tune_trial_id: str) -> str:
    """The run's id of a trial (its directory, its row): Tune's, or for a trial a resume runs on
    in a new Tune experiment, the id it started with."""
    return str(sampled.get(RESUMED_TRIAL) or tune_trial_id)


def trial_settings(sampled: Mapping[str, Any]) -> dict[str, Any]:
    """The sampled ``trial.*`` values, without what a resume adds to them."""
    return {key: value for key, value in sampled.items() if key not in (RESUMED_TRIAL, RESUMED_CHECKPOINT)}


def resumed_checkpoint(sampled: Mapping[str, Any]):
    """The checkpoint a resume found for this trial (a path or URI), as a Tune checkpoint; None without one."""
    location = sampled.get(RESUMED_CHECKPOINT)
    if not location:
        return None
    from ray import tune

    return tune.Checkpoint(str(location))


def is_configuration_failure(error: BaseException) -> bool:
    """A failure of the trial's configuration (it would fail again: not retried, and told to the
    sampler as infeasible), as opposed to one of the infrastructure (a node or worker died,
    the object store was lost), which Tune retries from the last checkpoint.

    prunetune's own errors (NaN loss, a configuration or data problem, a precision the device
    lacks) and running out of GPU memory at this configuration's batch size are the trial's.
    """
    if isinstance(error, PrunetuneError):
        return True
    kind = type(error)
    return kind.__name__ == "OutOfMemoryError" and kind.__module__.startswith("torch")


def failure_report(error: BaseException) -> dict[str, Any]:
    """The final report of a trial whose configuration failed: why (the whole message), and no objective."""
    return {M.ERROR: f"{type(error).__name__}: {str(error).strip()}", M.FAILED: True}


def trial_config(base: Config, sampled: Mapping[str, Any], *, teacher_cache_dir: str | None = None) -> Config:
    """The base configuration with the sampled dotted keys (and the shared teacher cache) set.

    The sampled point is validated once, here, against the trial section; the rest of the
    configuration was validated when the search loaded it.
    """
    config = base.with_trial_values(flatten_dotted(sampled))
    return config.with_teacher_cache(teacher_cache_dir) if teacher_cache_dir is not None else config


def with_latency_threads(config: Config, cpus: int) -> Config:
    """Latency is measured with the CPUs the trial was given unless the configuration says otherwise."""
    if config.trial.latency.threads is not None:
        return config
    return config.with_trial_values({"trial.latency.threads": cpus})


def _cpus_given() -> int:
    import ray

    cpus = ray.get_runtime_context().get_assigned_resources().get("CPU", 1.0)
    return max(1, int(round(cpus)))


def restore_checkpoint(checkpoint, target: Path) -> None:
    """Make ``target`` hold Tune's last checkpoint of this trial, or nothing.

    Tune's checkpoint is the state the driver knows about; anything else in ``target``
    (a checkpoint written after the last one Tune registered) is dropped.
    """
    if target.exists():
        shutil.rmtree(target)
    if checkpoint is not None:
        checkpoint.to_directory(str(target))


def check_final(final: Mapping[str, Any], objectives: Sequence[str]) -> None:
    """A final report without every contract key, or with a non-finite objective, is a failure."""
    missing = M.missing_final_keys(dict(final))
    if missing:
        raise TrialError(f"the trial's final report lacks {', '.join(missing)}")
    for key in objectives:
        value = final.get(key)
        if not _is_finite(value):
            raise TrialError(f"objective {key} = {value!r}: not a finite number")


def _is_finite(value: Any) -> bool:
    try:
        return math.isfinite(float(value))
    except (TypeError, ValueError):
        return False


class TuneReporter:
    """The ``report`` callable given to the trial: intermediate reports go to Tune at once,
    the final one (``done=True``) is held until the trial's files are written."""

    def __init__(self, *, node_id: str, trial_dir: str):
        self._extra = {NODE_ID: node_id, STARTED_AT: time.time(), TRIAL_DIR: trial_dir}
        self.held_final: dict[str, Any] | None = None

    def carry_settings(self, config: Config) -> None:
        """Every report from now on carries the trial's validated settings (results.parquet's)."""
        self._extra[TRIAL_SETTINGS] = validated_settings(config)

    def __call__(self, metrics: dict[str, Any], checkpoint_dir: Path | None) -> None:
        if metrics.get(M.DONE):
            self.held_final = dict(metrics)
            return
        self.send(metrics, checkpoint_dir)

    def send(self, metrics: Mapping[str, Any], checkpoint_dir: Path | None) -> None:
        from ray import tune

        # Tune treats `done` as "stop this trial"; lists (per-layer widths) stay in result.json.
        payload = {k: v for k, v in metrics.items() if k != M.DONE and _is_scalar(v)}
        payload.update(self._extra)
        checkpoint = tune.Checkpoint.from_directory(str(checkpoint_dir)) if checkpoint_dir else None
        try:
            tune.report(payload, checkpoint=checkpoint)  # exits the trial when a scheduler stopped it
        finally:
            if checkpoint_dir is not None:
                # Tune has its own copy now (a resumed trial is given it back): no second copy on disk.
                shutil.rmtree(checkpoint_dir, ignore_errors=True)


def _is_scalar(value: Any) -> bool:
    return value is None or isinstance(value, (bool, int, float, str))
