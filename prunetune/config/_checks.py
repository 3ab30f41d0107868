"""Checks that span sections or need more than one value: the space against the teacher, the
scheduler against the trial, resources, pruning targets."""

from __future__ import annotations

import math
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from prunetune.builtins import BUILTIN_DATASETS
from prunetune.config._dotted import flatten_dotted
from prunetune.config._schema import RUNG_KEYS, Config, SearchConfig
from prunetune.config._trial_schema import METHODS, TeacherConfig, TrialConfig
from prunetune.errors import ConfigError, PrunetuneError
from prunetune.metrics import CONSTRAINT_METRICS, task_metric_keys
from prunetune.trainables.families import ModelDims, read_model_dims
from prunetune.trainables.methods import METHODS as METHOD_REGISTRY
from prunetune.trainables.runtimes import pairing_problems
from prunetune.trainables.tasks import TASKS


def boolean_problems(raw: Mapping[str, Any], model: type[BaseModel] | None = None, prefix: str = "") -> list[str]:
    """A YAML boolean (yes, no, on, off, true, false) given for a number: pydantic would read it as 1 or 0."""
    problems = []
    for name, value in raw.items() if isinstance(raw, Mapping) else ():
        field = (model or Config).model_fields.get(str(name))
        if field is None:
            continue  # an unknown key: pydantic names it
        section = _section_model(field.annotation)
        if section is not None and isinstance(value, Mapping):
            problems += boolean_problems(value, section, f"{prefix}{name}.")
        elif isinstance(value, bool) and _takes_numbers(field.annotation):
            problems.append(f"{prefix}{name} = {value}: expected a number, not a boolean (YAML reads yes, no, on, "
                            "off, true and false as booleans)")
    return problems


def _section_model(annotation: Any) -> type[BaseModel] | None:
    for candidate in (annotation, *typing.get_args(annotation)):
        if isinstance(candidate, type) and issubclass(candidate, BaseModel):
            return candidate
    return None


def _takes_numbers(annotation: Any) -> bool:
    accepted = typing.get_args(annotation) if typing.get_args(annotation) and typing.get_origin(annotation) in (
        typing.Union, types.UnionType) else (annotation,)
    return bool not in accepted and any(kind in (int, float) for kind in accepted)


def pruning_target_problems(raw: Mapping[str, Any]) -> list[str]:
    """``trial.sparsity`` and ``trial.target_speedup`` both given: one of them would be dropped."""
    trial = raw.get("trial") if isinstance(raw.get("trial"), Mapping) else {}
    if trial.get("sparsity") is None or trial.get("target_speedup") is None:
        return []
    return [f"trial.sparsity = {trial['sparsity']!r} and trial.target_speedup = {trial['target_speedup']!r}: two "
            "pruning targets; set one (with a target speed-up, the sparsity is what the pruner reaches, a result)"]


def unused_rung_problems(config: Config) -> list[str]:
    """Rung settings with ``search.scheduler: fifo``, which has no rungs, would be ignored."""
    search = config.search
    if search.scheduler != "fifo":
        return []
    given = {name: getattr(search, name) for name in RUNG_KEYS
             if getattr(search, name) != SearchConfig.model_fields[name].default}
    return [f"search.{name} = {value!r} with search.scheduler = 'fifo': fifo runs every trial to the end and has "
            f"no rungs, so {name} would be ignored; set search.scheduler to asha, moasha or moasha-interval, or remove "
            f"search.{name}" for name, value in given.items()]


def prunes_to_speed(config: Config) -> bool:
    """Whether a trial of this search may prune to a speed-up (it is set, or searched)."""
    searched = "trial.target_speedup" in config.space and config.space["trial.target_speedup"].is_searched
    return config.trial.target_speedup is not None or searched


def rungs_read_tables(config: Config) -> bool:
    """Whether the trials' rungs predict their latency from the latency table (trial.rung_latency)."""
    return config.trial.report_objectives and config.trial.rung_latency == "table"


def speed_table_settings(config: Config) -> list[tuple[str, str]]:
    """The (runtime, inference precision) pairs whose latency tables the trials will read: every
    pair the space can combine that the runtime serves; none when no trial prunes to a speed and
    no rung predicts its latency from a table."""
    if not (prunes_to_speed(config) or rungs_read_tables(config)):
        return []

    def offered(key: str, default: Any) -> list[Any]:
        dimension = config.space.get(key)
        values = dimension.values() if dimension is not None else None
        return values if values is not None else [default]

    return [(runtime, precision) for runtime in offered("trial.runtime", config.trial.runtime)
            for precision in offered("trial.inference_precision", config.trial.inference_precision)
            if not pairing_problems(runtime, precision)]


def task_kind_problems(config: Config) -> list[str]:
    """Objectives and constraints name the task's own metrics; the methods offered run on its kind."""
    kind = config.task_kind
    own = set(task_metric_keys(kind.name))
    others = {key for name in TASKS for key in task_metric_keys(name)} - own
    problems = [f"search.objectives.{key}: a {kind.name} task has no {key}; its metrics: {', '.join(sorted(own))}"
                for key in config.search.objectives if key in others]
    problems += [f"search.constraints.{name}: a {kind.name} task has no {CONSTRAINT_METRICS[name]}; its drops: "
                 f"{', '.join(f'max_{key}' for key in task_metric_keys(kind.name) if key.endswith('_drop'))} "
                 "(or max_drop, the headline metric's)"
                 for name in config.search.constraints.limits() if CONSTRAINT_METRICS.get(name) in others]
    method = config.space.get("trial.method")
    offered = method.values() if method is not None and method.is_searched else [config.trial.method]
    for name in offered or []:
        if name in kind.refused_methods:
            key = "space.trial.method" if method is not None and method.is_searched else "trial.method"
            problems.append(f"{key} = {name!r} cannot run on task.kind = {kind.name!r}: {kind.refused_methods[name]}; "
                            f"methods for {kind.name}: {', '.join(m for m in METHODS if m not in kind.refused_methods)}")
    return problems


def target_speedup_problems(config: Config) -> list[str]:
    """A searched method must be able to prune to a speed-up when the speed-up is set or searched."""
    if not prunes_to_speed(config):
        return []
    method = config.space.get("trial.method")
    offered = method.values() if method is not None and method.is_searched else [config.trial.method]
    unable = [name for name in offered or [] if not METHOD_REGISTRY[name].supports_target_speedup]
    if not unable:
        return []
    able = [name for name, m in METHOD_REGISTRY.items() if m.supports_target_speedup]
    return [f"space.trial.method offers {', '.join(unable)}, which prune(s) to trial.sparsity, not to "
            f"trial.target_speedup; with a target speed-up, offer only {', '.join(able)}"]


def scheduler_problems(config: Config) -> list[str]:
    """An early-stopping scheduler needs a rung below the last step and objectives a rung can rank."""
    from prunetune.metrics import rung_metrics

    search, trial = config.search, config.trial
    if search.scheduler == "fifo":
        return []
    key = f"search.scheduler = {search.scheduler!r}"
    ranked = rung_metrics(config.task.kind)
    problems = [f"{key} ranks trials on intermediate reports, which cannot carry {name}; objectives it can rank: "
                f"{', '.join(ranked)}" for name in search.objectives if name not in ranked]
    if "trial.max_steps" in config.space and config.space["trial.max_steps"].is_searched:
        problems.append(f"{key} with a searched trial.max_steps: every trial must end at the same last rung")
    if not scheduler_rungs(config):
        grace = search.grace_steps or trial.eval_every
        problems.append(f"{key}: no rung before the last step: search.grace_steps ({grace}) must be below "
                        f"trial.max_steps ({trial.max_steps})")
    return problems


def scheduler_rungs(config: Config) -> list[int]:
    """The steps at which ``search.scheduler`` ranks trials ([] for fifo). A trial in such a search
    reports at each of them, beside every ``trial.eval_every`` steps, and evaluates only there."""
    search = config.search
    if search.scheduler == "fifo":
        return []
    return rung_steps(search.grace_steps or config.trial.eval_every, search.reduction_factor, config.trial.max_steps)


def latency_thread_problems(config: Config, *, cpus: float | None = None) -> list[str]:
    """Latency timed with more threads than the trial has CPUs crawls (on a 2-CPU machine, 64 threads
    seem to hang): ``trial.latency.threads``, set or searched, is bounded by ``cpus`` (this machine's,
    for a trial alone), else by ``cluster.cpus_per_trial`` (in a search; not when the deploy nodes
    of ``search.measure_on`` take the measurements)."""
    if cpus is None and config.search.measure_on is not None:
        return []
    limit = max(1, math.ceil(cpus if cpus is not None else config.cluster.cpus_per_trial))
    where = (f"this machine has ({limit})" if cpus is not None
             else f"a trial is given (cluster.cpus_per_trial = {config.cluster.cpus_per_trial:g})")
    offered = {"trial.latency.threads": [config.trial.latency.threads]}
    dimension = config.space.get("trial.latency.threads")
    if dimension is not None and dimension.is_searched:
        offered = {"space.trial.latency.threads": dimension.extremes()}
    return [f"{key} = {threads}: more threads than the CPUs {where}; set at most {limit}, or null for the "
            f"trial's CPUs{'' if cpus is not None else ', or raise cluster.cpus_per_trial'}"
            for key, values in offered.items() for threads in values if threads is not None and threads > limit][:1]


def speedup_bound_problems(config: Config, tables: list[Mapping[str, Any]]) -> list[str]:
    """A target speed-up, set or searched, above what the latency tables allow (``max_speedup`` of
    each measured table: removing every layer but one, keeping one head and the narrowest FFN)."""
    if not tables:
        return []
    bound = min(tables, key=lambda table: table["max_speedup"])
    limit = float(bound["max_speedup"])
    why = (f"the latency table of {bound['runtime']} at {bound['precision']} allows at most {limit:.2f}x "
           "(every layer but one removed, one head and the narrowest FFN kept in it)")
    dimension = config.space.get("trial.target_speedup")
    if dimension is not None and dimension.is_searched:
        high = max(dimension.extremes())
        if high > limit:
            return [f"space.trial.target_speedup = {dimension.model_dump()}: speed-ups above {limit:.2f}x are "
                    f"unreachable: {why}; lower its upper end to at most {math.floor(limit * 100) / 100:g}"]
    elif config.trial.target_speedup is not None and config.trial.target_speedup > limit:
        return [f"trial.target_speedup = {config.trial.target_speedup:g}: unreachable: {why}; set at most "
                f"{math.floor(limit * 100) / 100:g}"]
    return []


def rung_steps(grace_steps: int, reduction_factor: int, max_steps: int) -> list[int]:
    """The steps at which trials are ranked: grace, grace * eta, grace * eta^2, ... below max_steps.

    The last step is not a rung: a trial that reaches it has finished.
    """
    steps, step = [], grace_steps
    while step < max_steps:
        steps.append(step)
        step *= reduction_factor
    return steps


def check_dataset(dataset: str) -> list[str]:
    suffix = Path(dataset).suffix.lower()
    if dataset in BUILTIN_DATASETS:
        return []
    if suffix in {".csv", ".json", ".jsonl", ".parquet"} and not Path(dataset).is_file():
        return [f"task.dataset = {dataset!r}: file not found"]
    return []


def model_problems(config: Config) -> list[str]:
    """What the teacher cannot run, read from its config.json only: the trial as configured and
    every trial the search space can make from it (each method it offers, with each finite value
    of every other searched key)."""
    try:
        dims = read_model_dims(config.teacher.model)
    except PrunetuneError as exc:
        return [str(exc)]
    problems: dict[str, str] = {}  # problem -> the first point of the space that has it
    for trial, offered in candidate_trials(config):
        found = METHOD_REGISTRY[trial.method].model_problems(trial, dims)
        found += _length_problems("trial.latency.seq_len", trial.latency.seq_len, dims)
        for problem in found:
            problems.setdefault(problem, f" (a point of the search space: {_describe_point(offered)})" if offered else "")
    return [*_length_problems("task.max_length", config.task.max_length, dims),
            *(problem + note for problem, note in problems.items())]


def family_problems(raw: dict[str, Any]) -> list[str]:
    """With an invalid config, at least say whether its teacher's architecture is supported."""
    teacher = raw.get("teacher") if isinstance(raw.get("teacher"), dict) else {}
    try:
        read_model_dims(str(teacher.get("model", TeacherConfig().model)))
    except PrunetuneError as exc:
        return [str(exc)]
    return []


def _length_problems(key: str, length: int, dims: ModelDims) -> list[str]:
    if dims.max_positions is not None and length > dims.max_positions:
        return [f"{key} = {length}: longer than the {dims.max_positions} positions {dims.describe()} can embed"]
    return []


def candidate_trials(config: Config) -> list[tuple[TrialConfig, dict[str, Any]]]:
    """(trial, the space's values in it) for the configured trial and the variations a search can make."""
    candidates = [(config.trial, {})]
    # Every value of a finite dimension; the two ends of a range (what a range can reach beyond
    # the model's limits, such as a sequence longer than its positions, it reaches at an end).
    finite = {key: dim.values() or dim.extremes() for key, dim in config.space.items() if dim.is_searched}
    methods = finite.pop("trial.method", None) or [config.trial.method]
    for method in methods:
        points = [{"trial.method": method}]
        points += [{"trial.method": method, key: value} for key, values in finite.items() for value in values]
        for point in points:
            trial = _trial_or_none(config, point)
            if trial is not None:
                candidates.append((trial, _differences(point, config.trial)))
    return candidates


def _trial_or_none(config: Config, point: dict[str, Any]) -> TrialConfig | None:
    try:
        return config.with_trial_values(point).trial
    except ConfigError:
        return None  # an invalid point of the space is reported by the space's own checks


def _differences(point: dict[str, Any], trial: TrialConfig) -> dict[str, Any]:
    current = flatten_dotted(trial.model_dump(mode="json"), "trial.")
    return {key: value for key, value in point.items() if current.get(key) != value}


def _describe_point(point: dict[str, Any]) -> str:
    return ", ".join(f"{key}={value!r}" for key, value in point.items())
