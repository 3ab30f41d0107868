"""The Python API: the CLI's verbs as typed functions, for notebooks and scripts.

    import prunetune

    outcome = prunetune.run_search("quickstart", run_dir="runs/nb", overrides=["search.num_trials=6"])
    summary = prunetune.report(outcome.run_dir.local)
    choice = prunetune.pick("runs/nb", constraints={"max_accuracy_drop": 0.02}, prefer="latency")
    exported = prunetune.export("runs/nb", trial_id=choice.trial_id, onnx=True)

A configuration is a :class:`~prunetune.config.Config`, a YAML file or a preset name.
:func:`tune_trainable` and :func:`tune_param_space` give the trial to a ``ray.tune.Tuner``
of the user's own. Heavy libraries (torch, Ray) are imported inside the functions.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from prunetune import config as config_module
from prunetune.config import Config
from prunetune.errors import ConfigError

if TYPE_CHECKING:
    from prunetune.analysis import ExportResult, Pick, RunSummary
    from prunetune.search import SearchOutcome

ConfigSource = Config | str | os.PathLike


def load_config(source: ConfigSource, overrides: Sequence[str] = (), *, check_model: bool = True) -> Config:
    """A validated configuration from a Config, a YAML file or a preset, with ``KEY.PATH=VALUE`` overrides."""
    config_module.check_override_list(overrides)
    if isinstance(source, Config):
        if not overrides:
            return source
        raw = config_module.apply_overrides(source.to_dict(), list(overrides))
        return config_module.validate(raw, check_model=check_model)
    return config_module.load(source, list(overrides), check_model=check_model)


def run_search(config: ConfigSource, *, run_dir: str | os.PathLike | None = None, overrides: Sequence[str] = (),
               address: str | None = None, wandb: bool = True) -> "SearchOutcome":
    """Search a configuration's space for the Pareto front; everything lands in ``run_dir``.

    ``run_dir`` defaults to ``output.dir``, else ``runs/<config name>``. ``address`` joins a
    Ray cluster (``auto``, ``HOST:PORT``, ``ray://HOST:PORT``); by default Ray runs in-process.
    """
    from prunetune import search

    resolved = load_config(config, overrides)
    run_dir = run_dir or resolved.output.dir or _default_run_dir(config)
    problem = output_dir_problem(run_dir, key="run_dir")
    if problem:
        raise ConfigError(problem)
    return search.run_search(resolved, run_dir=run_dir, address=address,
                             callbacks=_wandb_callbacks(resolved, run_dir, enabled=wandb))


def resume_search(run_dir: str | os.PathLike, *, address: str | None = None, wandb: bool = True,
                  verbosity: int | None = None) -> "SearchOutcome":
    """Continue the search in ``run_dir`` after its driver stopped: same study, same experiment."""
    from prunetune import search
    from prunetune.cluster import RunDir

    saved = search.saved_config(RunDir(run_dir))
    return search.resume_search(run_dir, address=address, verbosity=verbosity,
                                callbacks=_wandb_callbacks(saved, run_dir, enabled=wandb))


def run_trial(config: ConfigSource, *, output_dir: str | os.PathLike | None = None, overrides: Sequence[str] = (),
              progress: bool = False) -> dict[str, Any]:
    """One compression trial, without Ray; returns its final metrics (``result.json`` and ``model/`` in ``output_dir``)."""
    output_dir = output_dir or Path("runs") / "trials" / _config_name(config)
    problem = output_dir_problem(output_dir, key="output_dir")
    if problem:
        raise ConfigError(problem)
    resolved = load_config(config, overrides)
    problems = config_module.latency_thread_problems(resolved, cpus=local_cpus())
    if problems:
        raise ConfigError(problems)
    from prunetune.trainables.trial import run_trial as run

    return run(resolved.without_secrets(), output_dir=output_dir, progress=progress)


def output_dir_problem(path: str | os.PathLike, *, key: str) -> str | None:
    """Why ``path`` cannot become a directory (it, or a folder above it, is a file); None when it can."""
    for candidate in (Path(path), *Path(path).parents):
        if candidate.exists():
            if candidate.is_dir():
                return None
            what = "an existing file" if candidate == Path(path) else f"inside {str(candidate)!r}, an existing file"
            return f"{key} = {str(path)!r}: {what}; expected a directory (new or existing)"
    return None


def local_cpus() -> int:
    """The CPUs this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def report(run_dir: str | os.PathLike, *, wandb: bool = False, retime: str | None = None,
           evaluate_test: bool = False, address: str | None = None, console=None) -> "RunSummary":
    """The front of a finished (or stopped) search: writes pareto.parquet and plots/, prints the table.

    ``retime`` (``front`` or ``all``) first times those trials again quietly, and ``evaluate_test``
    evaluates the front and the teacher on the held-out test split, on ``address`` (default: the
    search's own cluster setting; Ray in-process on this machine).
    """
    from prunetune.analysis import summarize_run

    if retime is not None:
        from prunetune.search import retime_search

        retime_search(run_dir, policy=retime, address=address)
    if evaluate_test:
        from prunetune.search import evaluate_test_search

        evaluate_test_search(run_dir, address=address)
    return summarize_run(run_dir, wandb=wandb, console=console)


def pick(run_dir: str | os.PathLike, *, constraints: dict[str, float] | None = None, prefer: str = "knee",
         show: bool = False) -> "Pick":
    """The best trial under ``constraints`` (None: the search's own), chosen by ``prefer``; ``pick.found`` says if any."""
    from prunetune.analysis import analyse, load_run, pick_trial

    run = load_run(run_dir)
    analysis = analyse(run)
    chosen = pick_trial(run, analysis, constraints=constraints, prefer=prefer)
    if show:
        from prunetune.analysis.report import print_pick

        print_pick(chosen, run, analysis)
    return chosen


def export(run_dir: str | os.PathLike, *, trial_id: str | None = None, out: str | os.PathLike | None = None,
           constraints: dict[str, float] | None = None, prefer: str = "knee", onnx: bool = False,
           wandb: bool = True) -> "ExportResult":
    """Write a trial's model as a checked, ready-to-serve Hugging Face model directory.

    Without ``trial_id`` the trial is the one :func:`pick` chooses with ``constraints`` and ``prefer``.
    """
    from prunetune.analysis import analyse, explain, export_trial, load_run, pick_trial

    run = load_run(run_dir)
    analysis = analyse(run)
    why = None
    if trial_id is None:
        chosen = pick_trial(run, analysis, constraints=constraints, prefer=prefer)
        if not chosen.found:
            raise ConfigError(" ".join(explain(chosen, analysis.objectives)))
        trial_id, why = chosen.trial_id, explain(chosen, analysis.objectives)
    elif constraints or prefer != "knee":
        raise ConfigError("trial_id names the trial: it cannot be combined with constraints or prefer")
    out = Path(out) if out is not None else Path(run_dir) / "exports" / str(trial_id)
    return export_trial(run, analysis, str(trial_id), out, onnx=onnx, wandb=wandb, why=why)


def tune_trainable(config: ConfigSource, *, run_dir: str | os.PathLike):
    """The trial as a Ray Tune trainable (with its resources) for a ``tune.Tuner`` of your own.

    Each sampled point is a mapping of dotted ``trial.*`` keys (see :func:`tune_param_space`);
    the trial writes under ``run_dir/trials/<trial id>`` and reports every metric of the
    contract. The teacher is fine-tuned by the first trial that needs it and cached for the
    others in ``run_dir/teacher``.
    """
    from ray import tune

    from prunetune.cluster import RunDir, trial_resources
    from prunetune.names import TEACHER_DIR
    from prunetune.trainables.trainable import make_trainable

    resolved = load_config(config)
    run = RunDir(run_dir)
    resolved = resolved.with_teacher_cache(str(run.local_path(TEACHER_DIR)))
    if resolved.search.scheduler != "fifo":  # the scheduler ranks the objectives of intermediate reports
        resolved = resolved.with_trial_values({"trial.report_objectives": True})
    trainable = make_trainable(resolved.without_secrets(), run, objectives=list(resolved.search.objectives))
    return tune.with_resources(trainable, trial_resources(resolved.cluster.cpus_per_trial,
                                                          resolved.cluster.gpus_per_trial))


def tune_scheduler(config: ConfigSource, *, run_dir: str | os.PathLike | None = None):
    """``search.scheduler`` as a Ray Tune ``TrialScheduler`` (FIFO, ASHA or multi-objective ASHA) for a
    ``tune.Tuner`` of your own, with :func:`tune_trainable`; ``run_dir`` keeps its rungs in ``scheduler.json``."""
    from prunetune.names import SCHEDULER_FILE
    from prunetune.search.scheduler import make_scheduler

    resolved = load_config(config)
    problems = config_module.scheduler_problems(resolved)  # checked where a search uses them
    if problems:
        raise ConfigError(problems)
    state = Path(run_dir) / SCHEDULER_FILE if run_dir is not None else None
    if state is not None:
        state.parent.mkdir(parents=True, exist_ok=True)
    return make_scheduler(resolved, state_path=state)


def tune_param_space(config: ConfigSource) -> dict[str, Any]:
    """The configuration's searched dimensions as Ray Tune search-space objects (``tune.uniform``, ...)."""
    from ray import tune

    resolved = load_config(config)
    space = {}
    for key, dimension in resolved.space.items():
        if dimension.is_searched:
            space[key] = _tune_domain(tune, dimension)
    return space


def _tune_domain(tune, dimension):
    if dimension.kind == "choice":
        return tune.choice(list(dimension.choices or ()))
    if dimension.kind == "loguniform":
        return tune.loguniform(dimension.low, dimension.high)
    if dimension.kind == "int":
        step = int(dimension.step or 1)
        # Tune's randint excludes its upper bound; lograndint too.
        if dimension.log:
            return tune.lograndint(int(dimension.low), int(dimension.high) + 1)
        return tune.qrandint(int(dimension.low), int(dimension.high), step) if step > 1 else \
            tune.randint(int(dimension.low), int(dimension.high) + 1)
    if dimension.step is not None:
        return tune.quniform(dimension.low, dimension.high, dimension.step)
    return tune.uniform(dimension.low, dimension.high)


def _wandb_callbacks(config: Config, run_dir: str | os.PathLike, *, enabled: bool) -> list:
    if not enabled:
        return []
    from prunetune.cluster import RunDir
    from prunetune.search.wandb_callback import wandb_callbacks

    return wandb_callbacks(config.without_secrets(), RunDir(run_dir).local)


def _config_name(source: ConfigSource) -> str:
    return "config" if isinstance(source, Config) else Path(str(source)).stem


def _default_run_dir(source: ConfigSource) -> str:
    return str(Path("runs") / _config_name(source))
