"""The search driver: run directory, teacher, Tuner, and resume after the driver stopped.

``run_search`` prepares the run directory (``config.yaml``), fine-tunes the teacher once
(as a Ray task sized like a trial, so on a GPU worker when trials use GPUs), then runs a
Ray Tune ``Tuner`` whose search algorithm is Optuna (see ``_optuna``) and whose callbacks
write ``results.parquet`` and the terminal progress. ``resume_search`` continues the same
Optuna study in a new Tune experiment (see ``_resume``): finished trials stay finished,
unfinished ones run on from their last checkpoint, then new trials up to ``num_trials``.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import shutil
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence, TextIO

from prunetune import config as config_module
from prunetune.cluster import RunDir, check_fits, ray_cluster, trial_resources
from prunetune.cluster.energy import collect_ledgers
from prunetune.config import Config, flatten_dotted, speed_table_settings
from prunetune.errors import ConfigError, PrunetuneError, RunDirFullError
from prunetune.metrics import ACCURACY, ACCURACY_DROP, drop_key
from prunetune.names import (
    CONFIG_FILE,
    CONFIG_PREFIX,
    SCHEDULER_FILE,
    STATUS,
    STOPPED,
    STUDY_FILE,
    TEACHER_DIR,
    TEACHER_FILE,
    TERMINATED,
    TUNE_DIR,
    WALL_SECONDS,
)
from prunetune.search._optuna import (
    STOPPED_TOLD_AS,
    ParetoOptunaSearch,
    check_study_is_free,
    fail_leftover_trials,
    fail_nameless_trials,
    make_sampler,
    study_trials,
)
from prunetune.search._held_out import HeldOutFunction, evaluate_run_on_test
from prunetune.search._progress import ProgressCallback
from prunetune.search._results import (
    RESULTS_FILE,
    CheckpointCleanup,
    ResultsCallback,
    read_rows,
)
from prunetune.search._retime import RetimeFunction, RetimeOutcome, retime_run
from prunetune.search._resume import (
    ResumedCheckpointCleanup,
    check_unchanged,
    moved_from,
    next_experiment,
    plan_resume,
    record_started_config,
)
from prunetune.search.budget import TimeBudget
from prunetune.search.scheduler import RungScheduler, make_scheduler
from prunetune.spaces import starting_points
from prunetune.trainables.trainable import TrialFunction, make_trainable, run_trial_id

#: ``prepare_teacher``'s shape: ``fn(config, *, progress) -> artifacts (model_dir, key, baseline)``.
TeacherFunction = Callable[..., Any]


@dataclass(frozen=True)
class SearchOutcome:
    """What a finished (or stopped) search left in its run directory."""

    run_dir: RunDir
    num_trials: int
    num_failed: int
    front_size: int
    wall_seconds: float
    storage_url: str
    retimed: tuple[str, ...] = ()  # trials timed again quietly after the search
    flagged: tuple[str, ...] = ()  # ... whose in-search latency was more than 10% off
    num_stopped: int = 0  # trials the scheduler stopped early
    trial_seconds_saved: float = 0.0  # their trial time saved, estimated from the finished trials
    time_budget: float | None = None  # search.time_budget, seconds
    budget_spent: float | None = None  # ... of which the search spent (every session, for a resumed one)

    @property
    def results_path(self) -> Path:
        return self.run_dir.local_path(RESULTS_FILE)


# --------------------------------------------------------------------------- entry points


def run_search(
    config: Config,
    *,
    run_dir: str | os.PathLike | RunDir,
    trial_fn: TrialFunction | None = None,
    teacher_fn: TeacherFunction | None = None,
    retime_fn: RetimeFunction | None = None,
    address: str | None = None,
    callbacks: Sequence[Any] = (),
    stream: TextIO | None = None,
) -> SearchOutcome:
    """Search ``config``'s space for the Pareto front; everything lands in ``run_dir``.

    ``trial_fn``, ``teacher_fn`` and ``retime_fn`` replace ``run_trial``, ``prepare_teacher``
    and the quiet re-timing of a trial's model (same shapes; tests and benchmarks use
    :mod:`prunetune.search.synthetic`). ``callbacks`` are extra Ray Tune callbacks (e.g. W&B
    logging). ``address`` overrides ``cluster.address``.
    """
    run = run_dir if isinstance(run_dir, RunDir) else RunDir(run_dir)
    if run.exists(TUNE_DIR):
        raise ConfigError(
            f"run directory {run.location} already holds a search: resume it with "
            f"`prunetune search --resume {run.location}`, or choose another --output"
        )
    address = address if address is not None else config.cluster.address
    resolved = resolve_config(config, run)
    problems = search_problems(resolved, address=address)
    if problems:
        raise ConfigError(problems)
    run.local.mkdir(parents=True, exist_ok=True)
    check_study_is_free(_storage_url(resolved, run), resolved.search.study_name, run.location)
    started = time.monotonic()
    budget = TimeBudget.of(resolved, run.local)  # the clock runs from here: the teacher is part of the wait
    with run.lock(), _search_session(resolved, address) as cluster:
        check_measure_nodes(resolved)
        config_module.dump_yaml(resolved.without_secrets(), run.local_path(CONFIG_FILE))
        run.push(CONFIG_FILE)
        record_started_config(resolved.without_secrets().to_dict(), run)
        baseline = _prepare_teacher(resolved, run, teacher_fn, cluster, source_cache=config.teacher.cache_dir,
                                    stream=stream)
        searcher = _make_searcher(resolved, run, baseline, budget=budget)
        tuner = _make_tuner(resolved, run, searcher, trial_fn=trial_fn, callbacks=callbacks, stream=stream)
        retimed = _fit_and_finish(tuner, resolved, run, cluster, retime_fn=retime_fn, stream=stream)
    return _outcome(resolved, run, time.monotonic() - started, retimed)


def resume_search(
    run_dir: str | os.PathLike | RunDir,
    *,
    trial_fn: TrialFunction | None = None,
    teacher_fn: TeacherFunction | None = None,
    retime_fn: RetimeFunction | None = None,
    address: str | None = None,
    callbacks: Sequence[Any] = (),
    stream: TextIO | None = None,
    verbosity: int | None = None,
) -> SearchOutcome:
    """Continue the search in ``run_dir`` after its driver stopped: the same study, in a new Tune experiment.

    Only where it runs (``address``, ``cluster.address``) and how much it prints
    (``verbosity``, ``search.verbosity``) may change: a config.yaml edited otherwise is refused.
    """
    run = run_dir if isinstance(run_dir, RunDir) else RunDir(run_dir)
    resolved = saved_config(run)
    check_unchanged(resolved.without_secrets().to_dict(), run)
    for name in (STUDY_FILE, RESULTS_FILE, TEACHER_FILE, SCHEDULER_FILE):
        run.pull(name)
    if verbosity is not None:
        resolved = resolved.with_values({"search.verbosity": verbosity})
    address = address if address is not None else resolved.cluster.address
    started = time.monotonic()
    with run.lock(), _search_session(resolved, address) as cluster:
        baseline = _teacher_baseline(run)
        if baseline is None:
            baseline = _prepare_teacher(resolved, run, teacher_fn, cluster, source_cache=None, stream=stream)
        budget = TimeBudget.of(resolved, run.local, resumed=True)  # what was left when the search stopped
        tuner = _resumed_tuner(resolved, run, baseline, trial_fn=trial_fn, callbacks=callbacks, stream=stream,
                               budget=budget)
        retimed = _fit_and_finish(tuner, resolved, run, cluster, retime_fn=retime_fn, stream=stream)
    return _outcome(resolved, run, time.monotonic() - started, retimed)


def _teacher_baseline(run: RunDir) -> dict[str, Any] | None:
    path = run.local_path(TEACHER_FILE)
    return json.loads(path.read_text()) if path.is_file() else None


def _resumed_tuner(config: Config, run: RunDir, baseline: Mapping[str, Any], *, trial_fn: TrialFunction | None,
                   callbacks: Sequence[Any], stream: TextIO | None, budget: TimeBudget | None = None):
    """A new Tune experiment for the trials still to run (None when none is left).

    The study and ``results.parquet`` say which trials ended; those that had not run on from
    their last checkpoint, with their configuration and their id, before new ones are drawn.
    """
    url, name = _storage_url(config, run), config.search.study_name
    trials, owner = study_trials(url, name)
    if trials:
        fail_nameless_trials(url, name)
        trials, owner = study_trials(url, name)
    plan = plan_resume(trials, read_rows(run.local_path(RESULTS_FILE)), run, num_trials=config.search.num_trials)
    new = "new ones while the budget lasts" if plan.new_trials < 0 else f"{plan.new_trials} new ones"
    left = f" ({budget.describe()})" if budget is not None else ""
    _say(config, f"resuming: {len(plan.to_continue)} trials run on, {new} to draw{left}", stream)
    if plan.num_samples == 0 or (budget is not None and budget.left() <= 0 and not plan.to_continue):
        return None
    searcher = _make_searcher(config, run, baseline, moved_from=moved_from(owner, run, own_study=url == run.study_url),
                              budget=budget)
    searcher.continue_trials([trial.continued() for trial in plan.to_continue])
    experiment = next_experiment(run)
    return _make_tuner(config, run, searcher, trial_fn=trial_fn, stream=stream, num_samples=plan.num_samples,
                       callbacks=[*callbacks, ResumedCheckpointCleanup(run, experiment=experiment)],
                       experiment=experiment)


def retime_search(run_dir: str | os.PathLike | RunDir, *, policy: str | None = None, address: str | None = None,
                  retime_fn: RetimeFunction | None = None, stream: TextIO | None = None) -> RetimeOutcome:
    """Re-time a finished search's trials quietly (``prunetune report RUN_DIR --retime``).

    ``policy`` defaults to the search's own ``search.retime``, or ``front`` where that was off.
    """
    run = run_dir if isinstance(run_dir, RunDir) else RunDir(run_dir)
    resolved = saved_config(run)
    run.pull(RESULTS_FILE)
    policy = policy or (resolved.search.retime if resolved.search.retime != "off" else "front")
    address = address if address is not None else resolved.cluster.address
    with run.lock(), _search_session(resolved, address) as cluster:
        return _retime(resolved, run, cluster, policy=policy, retime_fn=retime_fn, stream=stream)


def evaluate_test_search(run_dir: str | os.PathLike | RunDir, *, address: str | None = None,
                         held_out_fn: HeldOutFunction | None = None, stream: TextIO | None = None) -> list[str]:
    """Evaluate a finished search's front and teacher on the held-out test split
    (``prunetune report RUN_DIR --evaluate-test``); the trial ids evaluated."""
    run = run_dir if isinstance(run_dir, RunDir) else RunDir(run_dir)
    resolved = saved_config(run)
    run.pull(RESULTS_FILE)
    address = address if address is not None else resolved.cluster.address
    with run.lock(), _search_session(resolved, address):
        return evaluate_run_on_test(run, config=resolved, held_out_fn=held_out_fn,
                                    say=lambda text: _say(resolved, text, stream))


def _fit_and_finish(tuner, config: Config, run: RunDir, cluster, *, retime_fn: RetimeFunction | None,
                    stream: TextIO | None) -> RetimeOutcome | None:
    """Run the trials (none without a ``tuner``), settle the nodes' energy ledgers, then re-time
    quietly (search.retime)."""
    with _stops_clearly_when_full(run):
        if tuner is None or _run_trials(tuner, config, run):
            _close_study(config, run)
        retimed = None
        if config.search.retime != "off":
            retimed = _retime(config, run, cluster, policy=config.search.retime, retime_fn=retime_fn, stream=stream)
        if config.search.evaluate_test:  # after re-timing: the front it evaluates is the quiet one
            evaluate_run_on_test(run, config=config, say=lambda text: _say(config, text, stream))
        return retimed


def _run_trials(tuner, config: Config, run: RunDir) -> bool:
    """Fit ``tuner``; whether every Tune trial ended (not when the user interrupted the search:
    a resume goes on with them)."""
    try:
        results = tuner.fit()
    finally:
        collect_ledgers(run.location, run.local)
    return results.num_terminated + results.num_errors == len(results)


def _close_study(config: Config, run: RunDir) -> None:
    """Once every Tune trial has ended, no Optuna trial runs."""
    if fail_leftover_trials(_storage_url(config, run), config.search.study_name) and not config.search.storage:
        run.push(STUDY_FILE)


#: Below this much free space, a failure of the search is taken for a full run directory.
FULL_BELOW_BYTES = 1 << 20
_FULL_MESSAGES = ("no space left on device", "disk is full", "database or disk is full")


@contextmanager
def _stops_clearly_when_full(run: RunDir) -> Iterator[None]:
    """A run directory whose file system filled up stops the search with a clear error.

    Writes there are atomic (results.parquet through a temporary file, the study in SQLite
    transactions), so what finished stays readable, and ``--resume`` continues once there is
    space again.
    """
    try:
        yield
    except Exception as error:
        if not _is_full(run, error):
            raise
        raise RunDirFullError(
            f"run directory {run.location}: its file system is full ({_free(run)} bytes free); the trials that "
            f"finished are safe in {RESULTS_FILE} and the study. Free some space, then continue with "
            f"`prunetune search --resume {run.location}`") from error


def _is_full(run: RunDir, error: BaseException) -> bool:
    chain = []
    while error is not None and len(chain) < 20:
        chain.append(error)
        error = error.__cause__ or error.__context__
    text = " ".join(str(link).lower() for link in chain)
    return any(getattr(link, "errno", None) == errno.ENOSPC for link in chain) or \
        any(message in text for message in _FULL_MESSAGES) or _free(run) < FULL_BELOW_BYTES


def _free(run: RunDir) -> int:
    try:
        return shutil.disk_usage(run.local).free
    except OSError:
        return FULL_BELOW_BYTES  # unknown: not taken for full


def _retime(config: Config, run: RunDir, cluster, *, policy: str, retime_fn: RetimeFunction | None,
            stream: TextIO | None) -> RetimeOutcome:
    from prunetune.cluster.measure_node import measurer_of

    return retime_run(run, objectives=config.search.objectives, policy=policy,
                      cpus_per_node=cluster.max_cpus_per_node, gpus_per_trial=config.cluster.gpus_per_trial,
                      retime_fn=retime_fn, say=lambda text: _say(config, text, stream),
                      measurer=measurer_of(config) if retime_fn is None else None)


def check_measure_nodes(config: Config) -> None:
    """With search.measure_on, a node with its resources must be up before anything is measured."""
    from prunetune.cluster.measure_node import live_nodes_with

    measure_on = config.search.measure_on
    if measure_on is not None and not live_nodes_with(measure_on.resources):
        raise ConfigError(f"search.measure_on.resources = {measure_on.resources}: no node of the cluster has them; "
                          "start the deploy nodes with them (ray start --address ... --resources=...) first")


# --------------------------------------------------------------------------- configuration


def saved_config(run: RunDir) -> Config:
    """The resolved configuration a search saved in its run directory."""
    run.pull(CONFIG_FILE)
    if not run.local_path(CONFIG_FILE).is_file():
        raise ConfigError(f"{run.location}: no {CONFIG_FILE}; not the run directory of a search")
    return config_module.load(run.local_path(CONFIG_FILE))


def resolve_config(config: Config, run: RunDir) -> Config:
    """Fixed dimensions applied, the teacher cached in the run directory (shared by all nodes), and
    intermediate reports that carry objectives when a scheduler ranks them."""
    values: dict[str, Any] = {key: dim.value for key, dim in config.space.items() if not dim.is_searched}
    values["teacher.cache_dir"] = str(run.local_path(TEACHER_DIR))
    if config.search.scheduler != "fifo":  # rungs rank trials on the objectives of their reports
        values["trial.report_objectives"] = True
    return config.with_values(values)


def search_problems(config: Config, *, address: str | None = None) -> list[str]:
    """Problems only a search has (a single trial does not care about them)."""
    from prunetune.cluster import address_problem
    from prunetune.config import scheduler_problems

    problems = list(scheduler_problems(config)) + config_module.latency_thread_problems(config)
    if not any(dim.is_searched for dim in config.space.values()):
        problems.append("space: no searched dimension (uniform, loguniform, int or choice); a search needs one")
    if config.cluster.gpus_per_trial == 0 and "trial.precision" not in config.space and config.trial.precision == "fp16":
        problems.append("trial.precision = 'fp16' with cluster.gpus_per_trial = 0: fp16 training needs a CUDA GPU")
    if config.cluster.gpus_per_trial == 0 and config.trial.device.startswith("cuda"):
        problems.append(f"trial.device = {config.trial.device!r} with cluster.gpus_per_trial = 0")
    problem = address_problem(address, key="--address" if address != config.cluster.address else "cluster.address")
    if problem:
        problems.append(problem)
    return problems


# --------------------------------------------------------------------------- teacher


#: Key of the teacher task's summary that lists the latency tables it measured (not kept in teacher.json).
LATENCY_TABLES = "latency_tables"


def _prepare_teacher(config: Config, run: RunDir, teacher_fn: TeacherFunction | None, cluster,
                     *, source_cache: str | None, stream: TextIO | None) -> dict[str, Any]:
    """Fine-tune (or find) the teacher once, on a worker shaped like a trial; write teacher.json."""
    import ray

    _say(config, "preparing the teacher (fine-tuned once, then shared by every trial)", stream)
    task = ray.remote(num_cpus=_teacher_cpus(config, cluster), num_gpus=config.cluster.gpus_per_trial)(_teacher_task)
    try:
        summary = ray.get(task.remote(config, run, teacher_fn, source_cache))
    except ray.exceptions.RayTaskError as exc:
        if isinstance(exc.cause, PrunetuneError):  # a data or configuration problem: said as it is, no Ray traceback
            raise exc.cause from None
        raise
    tables = summary.pop(LATENCY_TABLES, [])
    problems = config_module.speedup_bound_problems(config, tables)
    if problems:  # before any trial runs: the fine-tuned teacher and its tables stay cached
        raise ConfigError(problems)
    run.local_path(TEACHER_FILE).write_text(json.dumps(summary, indent=2, default=str))
    run.push(TEACHER_FILE)
    _say(config, f"teacher: accuracy {summary.get(ACCURACY):.4f}, latency {summary.get('latency_ms'):.3g} ms", stream)
    for table in tables:
        _say(config, f"latency table {table['runtime']}/{table['precision']}: a layer costs "
                     f"{table['dense_layer_ms']:.3g} ms dense, {table['removed_layer_ms']:.2g} ms removed; "
                     f"at most {table['max_speedup']:.1f}x", stream)
    return summary


def _teacher_cpus(config: Config, cluster) -> float:
    """Locally no trial runs yet, so the teacher may use every free core; on a cluster, a trial's share."""
    import ray

    if not cluster.is_local:
        return config.cluster.cpus_per_trial
    free = int(ray.available_resources().get("CPU", 0.0))  # what an earlier search may still hold is not
    return max(config.cluster.cpus_per_trial, min(cluster.max_cpus_per_node, free))


def _teacher_task(config: Config, run: RunDir, teacher_fn: TeacherFunction | None,
                  source_cache: str | None) -> dict[str, Any]:
    """Prepare the teacher in the user's cache (a hit when another search fine-tuned the same
    teacher), and the latency tables trials pruning to a speed will read, then copy them into
    the run directory, where every trial finds them."""
    if teacher_fn is None:
        from prunetune.trainables.training.teacher import prepare_teacher as teacher_fn
    artifacts = teacher_fn(config.with_teacher_cache(source_cache), progress=False)
    source = Path(artifacts.model_dir).parent  # the cache entry: model/, logits, baseline, latency tables
    tables = _latency_tables(config, artifacts.model_dir, source)
    target = Path(run.teacher_cache_dir()) / source.name
    if source.resolve() != target.resolve():
        shutil.copytree(source, target, dirs_exist_ok=True, ignore=shutil.ignore_patterns("*.lock"))
    run.push(TEACHER_DIR)
    model_dir = target / Path(artifacts.model_dir).name
    if run.is_remote:  # name the copy every node can reach
        model_dir = run.join(TEACHER_DIR, source.name, model_dir.name)
    return {"model_dir": str(model_dir), "key": artifacts.key, **artifacts.baseline,
            **({LATENCY_TABLES: tables} if tables else {})}


def _latency_tables(config: Config, model_dir, cache_dir: Path) -> list[dict[str, Any]]:
    """Measure the latency tables now, while no trial trains beside them (see ``prepare_tables``)."""
    if not speed_table_settings(config):
        return []  # a search that prunes to a sparsity imports nothing for it
    from prunetune.cluster.measure_node import measurer_of
    from prunetune.trainables.methods._speed import prepare_tables

    return [{"runtime": table.key.runtime, "precision": table.key.precision,
             "dense_layer_ms": table.layer(table.key.num_heads, table.key.ffn_width),
             "removed_layer_ms": table.removed_ms, "max_speedup": table.max_speedup()}
            for table in prepare_tables(config, model_dir, cache_dir, measurer=measurer_of(config))]


# --------------------------------------------------------------------------- Tune


@contextmanager
def _search_session(config: Config, address: str | None) -> Iterator[Any]:
    cluster_config = config.cluster
    with _tune_environment(config.search.verbosity), _quiet_logs(config.search.verbosity), ray_cluster(
        address=address, num_cpus=cluster_config.num_cpus, num_gpus=cluster_config.num_gpus,
        verbosity=config.search.verbosity,
    ) as cluster:
        check_fits(cluster, cluster_config.cpus_per_trial, cluster_config.gpus_per_trial)
        yield cluster


@contextmanager
def _tune_environment(verbosity: int) -> Iterator[None]:
    """Tune settings the search relies on, restored afterwards.

    Intermediate reports carry no latency or emissions, so Tune must not insist that every
    report holds every objective; and below verbosity 2 Ray's new output engine, which prints
    a box for every failed trial whatever its verbosity, gives way to the legacy one, silent
    at verbose=0.
    """
    settings = {
        "TUNE_DISABLE_STRICT_METRIC_CHECKING": "1",
        "RAY_AIR_NEW_OUTPUT": "1" if verbosity >= 2 else "0",
    }
    saved = {key: os.environ.get(key) for key in settings}
    os.environ.update(settings)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@contextmanager
def _quiet_logs(verbosity: int) -> Iterator[None]:
    """Below verbosity 2, Ray's and Optuna's per-trial logs give way to the progress lines."""
    import optuna

    loggers = {name: logging.getLogger(name) for name in ("ray.tune", "ray.train", "ray.air")}
    levels = {name: lg.level for name, lg in loggers.items()}
    optuna_level = optuna.logging.get_verbosity()
    if verbosity < 2:
        for lg in loggers.values():
            lg.setLevel(logging.CRITICAL)
    if verbosity < 3:
        optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        yield
    finally:
        for name, lg in loggers.items():
            lg.setLevel(levels[name])
        optuna.logging.set_verbosity(optuna_level)


def ray_verbose(verbosity: int) -> int:
    """Our verbosity (0-3) -> Ray Tune's: its status table only from 2, its full table at 3."""
    return {0: 0, 1: 0, 2: 1, 3: 3}[verbosity]


def _make_searcher(config: Config, run: RunDir, baseline: Mapping[str, Any], *,
                   moved_from: str | None = None, budget: TimeBudget | None = None) -> ParetoOptunaSearch:
    return make_searcher(config, storage_url=_storage_url(config, run), run_dir=run.location, baseline=baseline,
                         moved_from=moved_from, budget=budget)


def make_searcher(config: Config, *, storage_url: str, run_dir: str, baseline: Mapping[str, Any],
                  stopped_as: str = STOPPED_TOLD_AS, moved_from: str | None = None,
                  budget: TimeBudget | None = None) -> ParetoOptunaSearch:
    """The search's Optuna searcher: its space, sampler, limits, starting points (also for the replay)."""
    search = config.search
    dimensions = {key: dim for key, dim in config.space.items() if dim.is_searched}
    base_values = flatten_dotted(config.trial.model_dump(mode="json"), CONFIG_PREFIX)
    points = starting_points(dimensions, base_values, extra=search.starting_points,
                             known_good=search.known_good_points, limit=max(1, search.planned_trials // 2))
    limits = search.constraints.limits()
    return ParetoOptunaSearch(
        {key: dim.to_optuna() for key, dim in dimensions.items()},
        objectives=search.objectives,
        sampler=make_sampler(search.sampler, seed=search.seed, num_trials=search.planned_trials,
                             population_size=search.population_size, n_startup_trials=search.n_startup_trials),
        storage_url=storage_url,
        study_name=search.study_name,
        run_dir=run_dir,
        limits=limits,
        limit_columns=search.constraints.columns(),
        points_to_evaluate=points,
        fallback_values=_fallback_values(search.objectives, baseline),
        stopped_as=stopped_as,
        moved_from=moved_from,
        budget=budget,
    )


def _storage_url(config: Config, run: RunDir) -> str:
    return config_module.storage_url(config.search.storage, run.study_url)


#: ``accuracy_drop`` -> ``accuracy``: a drop objective names its metric.
DROP_SUFFIX = drop_key("")


def _fallback_values(objectives: Mapping[str, str], baseline: Mapping[str, Any]) -> dict[str, float]:
    """Stand-ins for a failure before any success: no accuracy, the teacher's cost."""
    values = {}
    for key, mode in objectives.items():
        if key.endswith(DROP_SUFFIX) and key.removesuffix(DROP_SUFFIX) in baseline:  # no quality at all: all of it lost
            values[key] = abs(float(baseline[key.removesuffix(DROP_SUFFIX)]))
        elif key == ACCURACY_DROP:
            values[key] = float(baseline.get(ACCURACY, 1.0))
        elif mode == "max":
            values[key] = 0.0
        else:
            values[key] = float(baseline.get(key, 1.0) or 1.0)
    return values


def _trainable(config: Config, run: RunDir, trial_fn: TrialFunction | None):
    from ray import tune

    # The trainable is pickled with the experiment: it carries no password (trials do not need one).
    function = make_trainable(config.without_secrets(), run, trial_fn=trial_fn, objectives=list(config.search.objectives))
    return tune.with_resources(function, trial_resources(config.cluster.cpus_per_trial, config.cluster.gpus_per_trial))


def trial_dirname(trial) -> str:
    """Tune's folder of a trial is named by its id alone, like ``trials/<trial_id>/`` (a trial a
    resume runs on keeps its id, so each experiment names its checkpoints alike)."""
    return run_trial_id(trial.config, trial.trial_id)


def _callbacks(config: Config, run: RunDir, extra: Sequence[Any], stream: TextIO | None, *,
               budget: TimeBudget | None = None) -> list[Any]:
    initial = read_rows(run.local_path(RESULTS_FILE))
    sync = (*((STUDY_FILE,) if run.is_remote and not config.search.storage else ()),
            *((SCHEDULER_FILE,) if run.is_remote and config.search.scheduler != "fifo" else ()))
    progress = ProgressCallback(config.search.objectives, num_trials=config.search.num_trials,
                                verbosity=config.search.verbosity, initial=initial, stream=stream, budget=budget)
    # Callbacks are pickled with the experiment: they carry no password.
    return [ResultsCallback(run, config.without_secrets(), sync_files=sync), CheckpointCleanup(), progress, *extra]


def _make_tuner(config: Config, run: RunDir, searcher: ParetoOptunaSearch, *, trial_fn: TrialFunction | None,
                callbacks: Sequence[Any], stream: TextIO | None, num_samples: int | None = None,
                experiment: str | None = None):
    """The Tuner of the search's first experiment (``tune/``), or of a resume's (``tune/<experiment>/``)."""
    from ray import tune

    search = config.search
    scheduler = make_scheduler(config, state_path=run.local_path(SCHEDULER_FILE))
    if experiment is not None and isinstance(scheduler, RungScheduler):  # the ladder the search had reached
        scheduler.reopen_at(run.local_path(SCHEDULER_FILE))
    return tune.Tuner(
        _trainable(config, run, trial_fn),
        param_space={},
        tune_config=tune.TuneConfig(
            search_alg=searcher,
            max_concurrent_trials=search.max_concurrent or None,
            scheduler=scheduler,
            # -1: Tune asks for trials until the searcher says the budget is spent.
            num_samples=(search.num_trials or -1) if num_samples is None else num_samples,
            trial_dirname_creator=trial_dirname,
            reuse_actors=search.reuse_actors,
        ),
        run_config=tune.RunConfig(
            name=TUNE_DIR if experiment is None else experiment,
            storage_path=run.location if experiment is None else run.tune_path,
            verbose=ray_verbose(search.verbosity),
            callbacks=_callbacks(config, run, callbacks, stream, budget=searcher.budget),
            failure_config=tune.FailureConfig(max_failures=search.max_retries),
            checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
        ),
    )


# --------------------------------------------------------------------------- outcome


def _outcome(config: Config, run: RunDir, seconds: float, retimed: RetimeOutcome | None = None) -> SearchOutcome:
    import numpy as np

    from prunetune.pareto import nondominated_mask

    rows = read_rows(run.local_path(RESULTS_FILE))
    ok = [row for row in rows if row[STATUS] == TERMINATED]
    objectives = config.search.objectives
    values = np.array([[row[key] for key in objectives] for row in ok], dtype=float).reshape(len(ok), len(objectives))
    front = int(nondominated_mask(values, list(objectives.values())).sum()) if len(ok) else 0
    stopped = [row for row in rows if row[STATUS] == STOPPED]
    return SearchOutcome(run_dir=run, num_trials=len(rows), num_failed=len(rows) - len(ok) - len(stopped),
                         num_stopped=len(stopped), trial_seconds_saved=trial_seconds_saved(ok, stopped),
                         front_size=front,
                         wall_seconds=seconds, storage_url=config_module.redact_url(_storage_url(config, run)),
                         retimed=tuple(retimed.retimed) if retimed else (),
                         flagged=tuple(retimed.flagged) if retimed else (),
                         **_budget_outcome(config, run))


def _budget_outcome(config: Config, run: RunDir) -> dict[str, float]:
    """The budget and what the search spent of it, as budget.json last recorded it."""
    budget = TimeBudget.of(config, run.local, resumed=True)
    if budget is None:
        return {}
    return {"time_budget": budget.seconds, "budget_spent": budget.spent_before}


def trial_seconds_saved(finished: Sequence[Mapping[str, Any]], stopped: Sequence[Mapping[str, Any]]) -> float:
    """Trial time the scheduler saved: for each stopped trial, the median finished trial's wall
    time minus its own (what it would have taken to run to its end, estimated)."""
    import statistics

    walls = [row[WALL_SECONDS] for row in finished if row.get(WALL_SECONDS) is not None]
    if not walls:
        return 0.0
    typical = statistics.median(walls)
    return sum(max(0.0, typical - (row.get(WALL_SECONDS) or 0.0)) for row in stopped)


def _say(config: Config, text: str, stream: TextIO | None) -> None:
    if config.search.verbosity > 0:
        import sys

        print(text, file=stream or sys.stdout, flush=True)
