"""The search, cluster and output sections and the whole :class:`Config`; pydantic's errors as
lines that name the key, the value and what was expected."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, Field, ValidationError, create_model, field_validator, model_validator

from prunetune.config._dotted import set_dotted
from prunetune.config._secrets import STORAGE_KEY, redact_url
from prunetune.config._trial_schema import MOVED_KEYS, TaskConfig, TeacherConfig, TrialConfig, _Section
from prunetune.errors import ConfigError
from prunetune.metrics import (
    CONSTRAINT_METRICS,
    DEFAULT_OBJECTIVES,
    METRIC_DESCRIPTIONS,
    METRIC_DIRECTIONS,
    Direction,
    default_objectives,
)
from prunetune.spaces import Dimension
from prunetune.trainables.tasks import TASKS

Sampler = Literal["nsga2", "tpe", "gp", "random"]
SAMPLERS: tuple[str, ...] = Sampler.__args__
Scheduler = Literal["fifo", "asha", "moasha", "moasha-interval"]
SCHEDULERS: tuple[str, ...] = Scheduler.__args__


DropBound = Literal["estimate", "upper"]


class _Constraints(_Section):
    """Limits told to the sampler as constraints: it prefers trials that meet them."""

    max_drop: float | None = Field(None, ge=0, description="drop of the task's headline metric (accuracy, pearson, "
                                   "entity f1, QA f1): teacher minus student")
    max_latency_ms: float | None = Field(None, gt=0)
    max_emissions_kg: float | None = Field(None, gt=0)
    drop_bound: DropBound = Field(
        "estimate", description="what a max_*_drop limit bounds: the measured drop (estimate) or the upper end "
        "of its 95% paired-bootstrap interval (upper): a trial meets `upper` only when the data rule out a "
        "larger drop")

    def limits(self) -> dict[str, float]:
        """The constraints that are set: name -> limit."""
        return {name: value for name, value in self.model_dump(exclude={"drop_bound"}).items() if value is not None}

    def columns(self) -> dict[str, str]:
        """The results column each set limit bounds (``drop_bound`` decides for the drops)."""
        from prunetune.metrics import constrained_column

        return {name: constrained_column(name, drop_bound=self.drop_bound) for name in self.limits()}


#: ``search.constraints``: ``max_drop``, latency, emissions, and ``max_<metric>_drop`` for every task metric.
ConstraintsConfig = create_model(
    "ConstraintsConfig", __base__=_Constraints, __doc__=_Constraints.__doc__,
    **{name: (float | None, Field(None, ge=0, description=f"{metric}: {METRIC_DESCRIPTIONS[metric]}"))
       for name, metric in CONSTRAINT_METRICS.items() if name not in _Constraints.model_fields},
)


class MeasureOnConfig(_Section):
    """The Ray resources of the nodes that take every latency measurement (``search.measure_on``)."""

    resources: dict[str, float] = Field(
        ..., min_length=1, description="custom resources only the deploy nodes have, e.g. {deploy_cpu: 1}; a "
        "node takes as many measurements at once as it has of them")

    @field_validator("resources")
    @classmethod
    def _custom_positive(cls, value: dict[str, float]) -> dict[str, float]:
        for name, amount in value.items():
            if name in ("CPU", "GPU", "memory", "object_store_memory"):
                raise ValueError(f"search.measure_on.resources.{name}: every node has {name}; name a custom "
                                 "resource that only the deploy nodes are started with (ray start --resources=...)")
            if not amount > 0:
                raise ValueError(f"search.measure_on.resources.{name} = {amount}: expected a positive amount")
        return value


#: What sizes a sampler's defaults when only a time budget ends the search.
DEFAULT_PLANNED_TRIALS = 24
_DURATION = re.compile(r"^\s*(?:(?P<h>\d+(?:\.\d+)?)\s*h)?\s*(?:(?P<m>\d+(?:\.\d+)?)\s*m(?:in)?)?\s*"
                       r"(?:(?P<s>\d+(?:\.\d+)?)\s*s)?\s*$")


def parse_duration(text: str) -> float:
    """``"1h30m"`` -> 5400.0: hours, minutes and seconds (``90s``, ``10m``, ``2h``), or a number of seconds."""
    try:
        return float(text)
    except ValueError:
        pass
    found = _DURATION.match(text)
    if not text.strip() or found is None or not any(found.groupdict().values()):
        raise ValueError("expected a duration such as 90s, 10m, 2h or 1h30m, or a number of seconds")
    parts = {unit: float(value or 0) for unit, value in found.groupdict().items()}
    return parts["h"] * 3600 + parts["m"] * 60 + parts["s"]


#: The settings of an early-stopping scheduler's rungs (``search.*``).
RUNG_KEYS = ("grace_steps", "reduction_factor")


class SearchConfig(_Section):
    sampler: Sampler = "nsga2"
    seed: int | None = Field(0, description="seeds the sampler; null for a different search each run")
    num_trials: int | None = Field(
        24, ge=1, description="trials to run; null with search.time_budget: as many as the budget allows")
    time_budget: float | None = Field(
        None, gt=0, description="wall-clock time of the search (90s, 10m, 2h, 1h30m, or seconds): no trial starts "
        "once less is left than a finished trial took (the median); trials running then finish")
    max_concurrent: int = Field(2, ge=1, description="trials running at once (resources permitting)")
    objectives: dict[str, Direction] = Field(
        default_factory=lambda: dict(DEFAULT_OBJECTIVES),
        description="2 or 3 metric keys -> max|min; a list of keys takes each metric's own direction",
    )
    constraints: ConstraintsConfig = ConstraintsConfig()
    storage: str | None = Field(None, description="SQLAlchemy URL of the Optuna study; default sqlite in the run dir")
    study_name: str = Field("prunetune", min_length=1)
    population_size: int | None = Field(None, ge=2, description="NSGA-II population; default scales with num_trials")
    n_startup_trials: int | None = Field(None, ge=1, description="random trials before TPE/GP model; default scales")
    starting_points: list[dict[str, Any]] = Field(default_factory=list, description="points evaluated first")
    known_good_points: bool = Field(True, description="also start from the published configurations")
    max_retries: int = Field(2, ge=0, description="retries of a trial whose node or worker died, from its last "
                             "checkpoint (a trial whose configuration fails is not retried)")
    scheduler: Scheduler = Field(
        "fifo", description="fifo runs every trial to the end; asha (first objective) and moasha (every objective, "
        "by non-dominated sorting) stop the trials that rank below the top 1/reduction_factor at a rung; "
        "moasha-interval stops a trial only when it ranks below them with its figures at the favourable ends "
        "of their 95% intervals (a rung's accuracy is measured on a finite split)")
    grace_steps: int | None = Field(
        None, ge=1, description="the first rung (asha, moasha); default trial.eval_every, the first report")
    reduction_factor: int = Field(3, ge=2, description="1/reduction_factor of the trials at a rung go on")
    retime: Literal["front", "all", "off"] = Field(
        "front", description="when the search ends, time again on a quiet node: the trials that could be on the "
        "front (front), every finished trial (all), or none (off)")
    evaluate_test: bool = Field(
        True, description="when the search ends, evaluate the front's trials and the teacher once on the test "
        "split, which the search never ranks on: the unbiased figures (*_test columns), with 95% intervals")
    reuse_actors: bool = Field(
        True, description="run trials in worker processes Ray keeps between trials: a trial on a reused worker "
        "skips the process start and finds the data, the teacher and its outputs as the worker's earlier trial "
        "left them; false starts a fresh process for every trial")
    measure_on: MeasureOnConfig | None = Field(
        None, description="take every latency measurement (tables, rungs, each trial's final one, the quiet "
        "re-timing) on the nodes with these Ray resources: the kind of node the model is deployed to")
    verbosity: int = Field(1, ge=0, le=3, description="0 quiet, 1 progress lines, 2 + Ray status, 3 + Ray's full table")

    def __repr_args__(self):
        # A printed or logged configuration never shows the study's password.
        for name, value in super().__repr_args__():
            yield name, redact_url(value) if name == "storage" and isinstance(value, str) else value

    @field_validator("time_budget", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> Any:
        return parse_duration(value) if isinstance(value, str) else value

    @model_validator(mode="after")
    def _an_end(self) -> "SearchConfig":
        if self.num_trials is None and self.time_budget is None:
            raise ValueError("num_trials = null needs search.time_budget: a search needs something that ends it "
                             "(a number of trials, a time budget, or both)")
        return self

    @property
    def planned_trials(self) -> int:
        """The trials the search plans for (sizes the sampler's defaults): num_trials, or under a time
        budget alone, a search of the default size."""
        return self.num_trials if self.num_trials is not None else DEFAULT_PLANNED_TRIALS

    @field_validator("retime", mode="before")
    @classmethod
    def _yaml_off(cls, value: Any) -> Any:
        # YAML reads an unquoted `off` as false.
        return "off" if value is False else value

    @field_validator("objectives", mode="before")
    @classmethod
    def _objective_list(cls, value: Any) -> Any:
        if isinstance(value, (list, tuple)):
            return {key: METRIC_DIRECTIONS.get(key, "max") for key in value}
        return value

    @field_validator("objectives")
    @classmethod
    def _known_objectives(cls, value: dict[str, str]) -> dict[str, str]:
        if not 2 <= len(value) <= 3:
            raise ValueError(f"expected 2 or 3 objectives, got {len(value)}: {list(value)}")
        for key, direction in value.items():
            if key not in METRIC_DIRECTIONS:
                raise ValueError(f"{key!r} is not a metric key; metric keys: {', '.join(METRIC_DIRECTIONS)}")
            if direction != METRIC_DIRECTIONS[key]:
                raise ValueError(f"{key} = {direction!r}: {key} improves when {METRIC_DIRECTIONS[key]}imised")
        return value


class ClusterConfig(_Section):
    address: str | None = Field(None, description="null: local Ray in-process; auto | HOST:PORT | ray://HOST:PORT")
    cpus_per_trial: float = Field(1.0, gt=0)
    gpus_per_trial: float = Field(0.0, ge=0, description="fractions such as 0.25 pack trials on one GPU")
    num_cpus: int | None = Field(None, ge=1, description="CPUs of the local in-process Ray (default: all)")
    num_gpus: int | None = Field(None, ge=0, description="GPUs of the local in-process Ray (default: all)")

    @field_validator("gpus_per_trial")
    @classmethod
    def _whole_gpus_above_one(cls, value: float) -> float:
        if value > 1 and value != int(value):
            raise ValueError(f"above 1, GPUs per trial must be a whole number, got {value}")
        return value


class WandbConfig(_Section):
    enabled: bool = True
    project: str = "prunetune"
    entity: str | None = None
    mode: Literal["auto", "offline", "online", "disabled"] = Field(
        "auto", description="auto: online when WANDB_API_KEY is set, else offline"
    )


class OutputConfig(_Section):
    dir: str | None = Field(None, description="run directory: a path or s3:// / gs:// URI; default runs/<config name>")
    wandb: WandbConfig = WandbConfig()


class Config(_Section):
    """The whole configuration of a trial and of a search."""

    task: TaskConfig = TaskConfig()
    teacher: TeacherConfig = TeacherConfig()
    trial: TrialConfig = TrialConfig()
    space: dict[str, Dimension] = Field(default_factory=dict, description="trial.* key -> dimension")
    search: SearchConfig = SearchConfig()
    cluster: ClusterConfig = ClusterConfig()
    output: OutputConfig = OutputConfig()

    @model_validator(mode="before")
    @classmethod
    def _task_defaults(cls, data: Any) -> Any:
        """Unless set, the objectives are the task's headline metric, latency and emissions; and
        ``search.constraints.max_drop`` bounds the drop of that headline metric by its own name."""
        if not isinstance(data, dict) or not isinstance(data.get("search", {}), dict):
            return data  # pydantic names what is wrong with the sections
        task = data.get("task") if isinstance(data.get("task"), dict) else {}
        kind = task.get("kind", "classification")
        if kind not in TASKS:
            return data
        search = {"objectives": default_objectives(kind), **data.get("search", {})}
        return {**data, "search": _headline_drop_named(search, kind)}

    @property
    def task_kind(self):
        """The task's kind (:class:`prunetune.trainables.tasks.TaskKind`)."""
        return TASKS[self.task.kind]

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")

    def with_values(self, values: dict[str, Any]) -> "Config":
        """A validated copy with dotted keys (``{"trial.sparsity": 0.7}``) replaced."""
        from prunetune.config._loading import set_values, validate

        return validate(set_values(self.to_dict(), values))

    def with_trial_values(self, values: Mapping[str, Any]) -> "Config":
        """A copy whose trial section takes the dotted ``trial.*`` values (a sampled point).

        Only the trial section is validated again: the rest was validated once, when the
        configuration was loaded.
        """
        raw = self.trial.model_dump(mode="json")
        for key, value in values.items():
            if not key.startswith("trial."):
                raise ConfigError(f"{key}: a trial's values are trial.* keys")
            set_dotted(raw, key.removeprefix("trial."), value)
        try:
            trial = TrialConfig.model_validate(raw)
        except ValidationError as exc:
            raise ConfigError(pydantic_problems(exc, prefix=("trial",))) from None
        return self.model_copy(update={"trial": trial})

    def without_secrets(self) -> "Config":
        """A copy safe to write, print, log or pickle: a storage URL's password masked.

        The real URL is read from the configuration the user gave, or from ``PRUNETUNE_STORAGE``.
        """
        if self.search.storage is None or redact_url(self.search.storage) == self.search.storage:
            return self
        search = self.search.model_copy(update={"storage": redact_url(self.search.storage)})
        return self.model_copy(update={"search": search})

    def with_teacher_cache(self, cache_dir: str | None) -> "Config":
        """A copy whose teacher is cached in ``cache_dir`` (where this node finds the run's teacher)."""
        return self.model_copy(update={"teacher": self.teacher.model_copy(update={"cache_dir": cache_dir})})


def _headline_drop_named(search: dict[str, Any], kind: str) -> dict[str, Any]:
    """``constraints.max_drop`` as ``constraints.max_<headline>_drop`` (refused when both differ)."""
    from prunetune.metrics import MAX_DROP, constraint_metric

    constraints = search.get("constraints")
    if not isinstance(constraints, dict) or constraints.get(MAX_DROP) is None:
        return search
    named = f"max_{constraint_metric(MAX_DROP, kind)}"
    limit = constraints[MAX_DROP]
    if constraints.get(named) is not None and constraints[named] != limit:
        raise ValueError(f"search.constraints.max_drop = {limit!r} and search.constraints.{named} = "
                         f"{constraints[named]!r} bound the same drop ({kind}'s headline metric): set one")
    rest = {key: value for key, value in constraints.items() if key != MAX_DROP}
    return {**search, "constraints": {**rest, named: limit}}


def pydantic_problems(exc: ValidationError, *, prefix: tuple[str, ...] = ()) -> list[str]:
    """One readable line per pydantic error: key, value and what was expected.

    ``prefix`` is where the validated model sits in the whole configuration (``("trial",)``).
    """
    lines = []
    for error in exc.errors():
        error = {**error, "loc": (*prefix, *error["loc"])}
        key = ".".join(str(part) for part in error["loc"]) or "<root>"
        message = error["msg"].removeprefix("Value error, ")
        if error["type"] == "extra_forbidden" and _moved_to(error["loc"]):
            lines.append(f"{key}: moved to {_moved_to(error['loc'])}")
        elif error["type"] == "extra_forbidden":
            lines.append(f"{key}: unknown key{_known_keys_hint(error['loc'])}")
        elif error["type"] == "missing":
            lines.append(f"{key}: required key is missing")
        elif isinstance(error.get("input"), dict):  # a rule over a whole section: its message names the keys
            lines.append(f"{key}: {message}")
        else:
            value = error.get("input")
            value = redact_url(value) if key == STORAGE_KEY and isinstance(value, str) else value
            lines.append(f"{key} = {value!r}: {message}")
    return lines


#: Keys of other sections that were renamed: (section, old) -> the new dotted key.
RENAMED_KEYS: dict[tuple[str, str], str] = {("search", "max_failures"): "search.max_retries"}


def _moved_to(loc: tuple) -> str | None:
    """Where a key that used to be a flat trial key (or was renamed) lives now, if it is one."""
    if len(loc) == 2 and loc[0] == "trial" and str(loc[1]) in MOVED_KEYS:
        return f"trial.{MOVED_KEYS[str(loc[1])]}"
    return RENAMED_KEYS.get(tuple(map(str, loc))) if len(loc) == 2 else None


def _known_keys_hint(loc: tuple) -> str:
    section: type[BaseModel] = Config
    for part in loc[:-1]:
        field = section.model_fields.get(str(part))
        annotation = getattr(field, "annotation", None)
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return ""
        section = annotation
    return f"; known keys: {', '.join(section.model_fields)}"
