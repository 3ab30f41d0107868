"""Typed, validated configuration: YAML in, frozen objects out.

``load()`` reads a YAML file or a built-in preset, applies ``--set key.path=value``
overrides, validates everything (including block sizes against the teacher's
dimensions, read from its config.json only) and raises one :class:`ConfigError`
listing every problem before any model is loaded.
"""

from __future__ import annotations

import copy
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    create_model,
    field_validator,
    model_validator,
)

from prunetune.builtins import BUILTIN_DATASETS
from prunetune.errors import ConfigError, PrunetuneError
from prunetune.metrics import (
    CONSTRAINT_METRICS,
    DEFAULT_OBJECTIVES,
    METRIC_DESCRIPTIONS,
    METRIC_DIRECTIONS,
    Direction,
    default_objectives,
    task_metric_keys,
)
from prunetune.spaces import Dimension, config_space_problems
from prunetune.trainables.families import ModelDims, read_model_dims
from prunetune.trainables.methods import METHODS as METHOD_REGISTRY
from prunetune.trainables.methods import moved_keys
from prunetune.trainables.runtimes import RUNTIMES as RUNTIME_REGISTRY
from prunetune.trainables.runtimes import pairing_problems
from prunetune.trainables.tasks import TASKS

PRESETS_DIR = Path(__file__).parent / "spaces" / "presets"

Method = Literal.__getitem__(tuple(METHOD_REGISTRY))  # the registry's names
TrainPrecision = Literal["fp32", "fp16", "bf16"]
InferencePrecision = Literal["fp32", "fp16", "bf16", "int8", "sparse24"]
Runtime = Literal.__getitem__(tuple(RUNTIME_REGISTRY))  # the registry's names
FillInit = Literal["teacher", "random"]

METHODS: tuple[str, ...] = tuple(METHOD_REGISTRY)
TRAIN_PRECISIONS: tuple[str, ...] = TrainPrecision.__args__
INFERENCE_PRECISIONS: tuple[str, ...] = InferencePrecision.__args__


class _Section(BaseModel):
    """Frozen, strict: unknown keys are errors, values are never silently coerced to str."""

    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)


TaskKindName = Literal.__getitem__(tuple(TASKS))  # the registry's names


class TaskConfig(_Section):
    kind: TaskKindName = Field("classification", description="what the encoder is deployed for: classification "
                               "(one text or a pair), regression, token_classification, question_answering")
    dataset: str = Field("bbc_news", description="built-in name | .csv/.json/.jsonl/.parquet path | HF dataset id "
                         "| a dataset saved with save_to_disk")
    text_column: str = "text"
    text_pair_column: str | None = Field(None, description="a second text per row (sentence pairs): classification "
                                         "and regression")
    label_column: str = Field("label", description="classification: class names or ids; regression: a number")
    tokens_column: str = Field("tokens", description="token_classification: a list of words per row")
    tags_column: str = Field("tags", description="token_classification: a tag per word (strings, or ids with "
                             "the dataset's ClassLabel names)")
    question_column: str = Field("question", description="question_answering: the question")
    context_column: str = Field("context", description="question_answering: the context the answer is a span of")
    answers_column: str = Field("answers", description='question_answering: {"text": [...], "answer_start": [...]}')
    doc_stride: int = Field(32, ge=1, description="question_answering: tokens shared by consecutive windows of a "
                            "long context")
    max_answer_length: int = Field(30, ge=1, description="question_answering: longest answer span, in tokens")
    max_length: int = Field(128, ge=8, le=4096)
    seed: int = 0
    validation_fraction: float = Field(0.15, gt=0, lt=0.5)
    test_fraction: float = Field(0.15, gt=0, lt=0.5)
    eval_split: Literal["validation", "test"] = "validation"
    max_train_samples: int | None = Field(None, ge=2)
    max_eval_samples: int | None = Field(None, ge=2)
    hf_config: str | None = Field(None, description="configuration name of a HF dataset")

    @model_validator(mode="after")
    def _windows_fit(self) -> "TaskConfig":
        if self.kind == "question_answering" and self.doc_stride >= self.max_length // 2:
            raise ValueError(f"task.doc_stride = {self.doc_stride}: must be below half of task.max_length "
                             f"({self.max_length}), or consecutive windows of a context would barely move")
        return self

    @model_validator(mode="after")
    def _pair_only_where_read(self) -> "TaskConfig":
        if self.text_pair_column is not None and self.kind not in ("classification", "regression"):
            raise ValueError(f"task.text_pair_column = {self.text_pair_column!r} with task.kind = {self.kind!r}: a "
                             "second text is read by classification and regression (question_answering reads "
                             "task.question_column and task.context_column)")
        return self


class TeacherConfig(_Section):
    model: str = Field("minilm-l6", description="built-in name | local HF model dir | hub id")
    epochs: float = Field(3.0, gt=0)
    batch_size: int = Field(32, ge=1)
    learning_rate: float = Field(5e-5, gt=0, lt=1)
    max_steps: int | None = Field(None, ge=1, description="cap on fine-tuning steps")
    cache_dir: str | None = Field(None, description="where fine-tuned teachers are cached")


class LatencyConfig(_Section):
    batch_size: int = Field(1, ge=1)
    seq_len: int = Field(128, ge=1)
    min_run_time: float = Field(1.0, gt=0, description="seconds of timing per model, over all rounds")
    threads: int | None = Field(None, ge=1, description="CPU threads; default: the CPUs the trial was given "
                                "(in a search, cluster.cpus_per_trial; alone, torch's own count)")
    rounds: int = Field(5, ge=1, le=50, description="alternating rounds in which the student and the dense "
                        "teacher are timed")
    max_spread: float = Field(0.1, gt=0, description="a latency whose round medians spread wider than this "
                              "(interquartile range / median) is measured again, then flagged noisy")


class EmissionsConfig(_Section):
    country_iso_code: str = Field("USA", min_length=3, max_length=3)
    measure_power_secs: float = Field(5.0, gt=0)


DEFAULT_EVAL_EVERY = 50


class _TrialSettings(_Section):
    """The keys every method shares; each method's own options are added below, under its name."""

    method: Method = "movement"
    sparsity: float | None = Field(0.5, ge=0, lt=1, description="fraction of the prunable encoder weights to "
                                   "remove; null (and a reported result) when trial.target_speedup is set")
    target_speedup: float | None = Field(
        None, gt=1, description="prune to this speed-up over the dense teacher in the same runtime and precision, "
        "predicted by the per-layer latency table, instead of to trial.sparsity")
    layer_distill: float = Field(
        0.0, ge=0, description="weight of the distillation of hidden states of mapped teacher layers, beside the "
        "logit distillation (0: logits only)")
    block_size: int = Field(32, ge=1)
    min_head_density: float = Field(
        0.25, ge=0, lt=1, description="a head keeping less than this fraction of its Q, K or V blocks is removed whole"
    )
    temperature: float = Field(2.0, gt=0)
    alpha: float = Field(0.9, ge=0, le=1, description="weight of distillation vs task loss")
    precision: TrainPrecision = "fp32"
    inference_precision: InferencePrecision = "fp32"
    runtime: Runtime = Field("torch", description="what the student is served, measured and exported in: "
                             + ", ".join(f"{name} ({r.label})" for name, r in RUNTIME_REGISTRY.items()))
    calibration_samples: int = Field(
        300, ge=1, le=100_000, description="training texts a post-training int8 quantiser calibrates on "
        "(trial.runtime: openvino)")
    max_steps: int = Field(300, ge=1)
    batch_size: int = Field(16, ge=1)
    learning_rate: float = Field(3e-5, gt=0, lt=1)
    warmup_fraction: float = Field(0.1, ge=0, lt=1, description="dense steps before pruning starts")
    cooldown_fraction: float = Field(0.2, ge=0, lt=1, description="steps at the final sparsity")
    eval_every: int = Field(DEFAULT_EVAL_EVERY, ge=1, description="steps between intermediate reports and "
                            "checkpoints; default 50, or max_steps when that is smaller")
    seed: int = 0
    report_objectives: bool = Field(
        False, description="intermediate reports also carry the objectives the trial would score if it stopped "
        "there (the asha and moasha schedulers rank trials on them and turn this on)")
    device: str = Field("auto", pattern=r"^(auto|cpu|cuda(:\d+)?)$")
    # hybrid filled: after compaction, the zeros left inside live heads are re-initialised and
    # the compacted student distils again for fill_steps steps.
    filled: bool = Field(False, description="re-initialise the zeros inside live heads after compaction and fine-tune again")
    fill_steps: int = Field(100, ge=1, description="distillation steps after filling (on top of max_steps)")
    fill_init: FillInit = Field("teacher", description="filled zeros take the dense teacher's values, or a fresh random init")
    latency: LatencyConfig = LatencyConfig()
    emissions: EmissionsConfig = EmissionsConfig()

    @model_validator(mode="before")
    @classmethod
    def _default_evaluation(cls, data: Any) -> Any:
        """Unless set, report (and checkpoint) every 50 steps, or once at the end of a shorter trial."""
        if isinstance(data, dict) and "eval_every" not in data:
            steps = data.get("max_steps", DEFAULT_EVAL_EVERY)
            if isinstance(steps, int) and not isinstance(steps, bool) and steps >= 1:
                data = {**data, "eval_every": min(DEFAULT_EVAL_EVERY, steps)}
        return data

    @model_validator(mode="before")
    @classmethod
    def _speed_replaces_sparsity(cls, data: Any) -> Any:
        """A target speed-up replaces the sparsity target: the sparsity becomes a result."""
        if isinstance(data, dict) and data.get("target_speedup") is not None:
            data = {**data, "sparsity": None}
        return data

    @model_validator(mode="after")
    def _one_pruning_target(self) -> "TrialConfig":
        if self.sparsity is None and self.target_speedup is None:
            raise ValueError("set trial.sparsity (a fraction of weights to remove) or trial.target_speedup")
        if self.target_speedup is not None and not METHOD_REGISTRY[self.method].supports_target_speedup:
            able = [name for name, method in METHOD_REGISTRY.items() if method.supports_target_speedup]
            raise ValueError(f"trial.target_speedup with trial.method = {self.method!r}: {self.method} prunes to "
                             f"trial.sparsity; methods that prune to a speed-up: {', '.join(able)}")
        return self

    @model_validator(mode="after")
    def _runtime_serves_precision(self) -> "TrialConfig":
        problems = pairing_problems(self.runtime, self.inference_precision)
        if problems:
            raise ValueError("; ".join(problems))
        return self

    @model_validator(mode="after")
    def _evaluation_fits(self) -> "TrialConfig":
        if self.eval_every > self.max_steps:
            raise ValueError(f"trial.eval_every must be <= trial.max_steps (a trial reports and checkpoints every "
                             f"eval_every steps), got {self.eval_every} > {self.max_steps}")
        return self

    @model_validator(mode="after")
    def _schedule_fits(self) -> "TrialConfig":
        if self.warmup_fraction + self.cooldown_fraction >= 1:
            raise ValueError(
                "trial.warmup_fraction + trial.cooldown_fraction must be < 1, got "
                f"{self.warmup_fraction} + {self.cooldown_fraction}"
            )
        return self



#: Old flat trial keys -> where they live now (without ``trial.``).
MOVED_KEYS: dict[str, str] = moved_keys()

#: The trial section: the shared keys, and each method's options under the method's name.
TrialConfig = create_model(
    "TrialConfig",
    __base__=_TrialSettings,
    __doc__="One trial's configuration: shared keys, and each method's options under its name.",
    **{name: (method.options, Field(default_factory=method.options, description=method.summary))
       for name, method in METHOD_REGISTRY.items() if method.options is not None},
)


# --------------------------------------------------------------------------- search sections

Sampler = Literal["nsga2", "tpe", "gp", "random"]
SAMPLERS: tuple[str, ...] = Sampler.__args__
Scheduler = Literal["fifo", "asha", "moasha"]
SCHEDULERS: tuple[str, ...] = Scheduler.__args__


class _Constraints(_Section):
    """Limits told to the sampler as constraints: it prefers trials that meet them."""

    max_drop: float | None = Field(None, ge=0, description="drop of the task's headline metric (accuracy, pearson, "
                                   "entity f1, QA f1): teacher minus student")
    max_latency_ms: float | None = Field(None, gt=0)
    max_emissions_kg: float | None = Field(None, gt=0)

    def limits(self) -> dict[str, float]:
        """The constraints that are set: name -> limit."""
        return {name: value for name, value in self.model_dump().items() if value is not None}


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


class SearchConfig(_Section):
    sampler: Sampler = "nsga2"
    seed: int | None = Field(0, description="seeds the sampler; null for a different search each run")
    num_trials: int = Field(24, ge=1)
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
        "by non-dominated sorting) stop the trials that rank below the top 1/reduction_factor at a rung")
    grace_steps: int | None = Field(
        None, ge=1, description="the first rung (asha, moasha); default trial.eval_every, the first report")
    reduction_factor: int = Field(3, ge=2, description="1/reduction_factor of the trials at a rung go on")
    retime: Literal["front", "all", "off"] = Field(
        "front", description="when the search ends, time again on a quiet node: the trials that could be on the "
        "front (front), every finished trial (all), or none (off)")
    reuse_actors: bool = Field(False, description="run trials in reused worker processes (faster start, shared state)")
    measure_on: MeasureOnConfig | None = Field(
        None, description="take every latency measurement (tables, rungs, each trial's final one, the quiet "
        "re-timing) on the nodes with these Ray resources: the kind of node the model is deployed to")
    verbosity: int = Field(1, ge=0, le=3, description="0 quiet, 1 progress lines, 2 + Ray status, 3 + Ray's full table")

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
        raw = self.to_dict()
        for key, value in values.items():
            _set_dotted(raw, key, value)
        return validate(raw)

    def with_trial_values(self, values: Mapping[str, Any]) -> "Config":
        """A copy whose trial section takes the dotted ``trial.*`` values (a sampled point).

        Only the trial section is validated again: the rest was validated once, when the
        configuration was loaded.
        """
        raw = self.trial.model_dump(mode="json")
        for key, value in values.items():
            if not key.startswith("trial."):
                raise ConfigError(f"{key}: a trial's values are trial.* keys")
            _set_dotted(raw, key.removeprefix("trial."), value)
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


# --------------------------------------------------------------------------- loading


def preset_names() -> list[str]:
    return sorted(p.stem for p in PRESETS_DIR.glob("*.yaml"))


def read_yaml(source: str | Path) -> tuple[dict[str, Any], str]:
    """Raw mapping of a YAML file or preset name, with a label naming where it came from."""
    path = Path(source)
    if not path.is_file():
        preset = PRESETS_DIR / f"{source}.yaml"
        if not preset.is_file():
            raise ConfigError(
                f"config {str(source)!r}: no such file and no such preset; "
                f"presets: {', '.join(preset_names())}"
            )
        path = preset
    return read_yaml_mapping(path), str(path)


def read_yaml_mapping(path: Path, *, error: type[PrunetuneError] = ConfigError) -> dict[str, Any]:
    """The mapping a YAML file holds; ``error`` names the file and what is wrong with it."""
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except UnicodeDecodeError:
        raise error(f"{path}: not a text file; expected a YAML configuration") from None
    except yaml.YAMLError as exc:
        raise error(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise error(f"{path}: expected a mapping of sections, got {type(raw).__name__}")
    return raw


def parse_override(item: str) -> tuple[str, Any]:
    """``"trial.sparsity=0.7"`` -> ``("trial.sparsity", 0.7)``; values are parsed as YAML."""
    key, sep, text = item.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"--set {item!r}: expected KEY.PATH=VALUE, e.g. trial.sparsity=0.7")
    try:
        value = yaml.safe_load(text) if text.strip() else None
    except yaml.YAMLError:
        value = text
    return key.strip(), value


def apply_overrides(raw: dict[str, Any], overrides: list[str] | None) -> dict[str, Any]:
    raw = copy.deepcopy(raw)
    for item in overrides or []:
        key, value = parse_override(item)
        _set_dotted(raw, key, value)
    return raw


def load(source: str | Path, overrides: list[str] | None = None, *, check_model: bool = True) -> Config:
    """Load, override and validate a config; raise one ConfigError listing every problem."""
    raw, label = read_yaml(source)
    raw = apply_overrides(raw, overrides)
    return validate(raw, source=label, check_model=check_model)


def validate(raw: dict[str, Any], *, source: str | None = None, check_model: bool = False) -> Config:
    """Validate a raw mapping; every problem (types, ranges, model fit) is reported at once."""
    problems: list[str] = []
    config = None
    raw = speed_replaces_searched_sparsity(raw)
    try:
        config = Config.model_validate(raw)
    except ValidationError as exc:
        problems += pydantic_problems(exc)
    section = lambda name: raw.get(name) if isinstance(raw.get(name), dict) else {}  # noqa: E731
    problems += check_dataset(str(section("task").get("dataset", TaskConfig().dataset)))
    problems += config_space_problems(raw, trial_model=TrialConfig)
    if config is not None:  # (the scheduler's settings are a search's: checked where a search starts)
        problems += target_speedup_problems(config)
        problems += task_kind_problems(config)
    if check_model:
        problems += model_problems(config) if config is not None else _family_problems(raw)
    if problems:
        raise ConfigError(_unique(problems), source=source)
    assert config is not None  # no problems means pydantic accepted it
    return config


def speed_replaces_searched_sparsity(raw: dict[str, Any]) -> dict[str, Any]:
    """With a target speed-up set or searched, a sparsity dimension of the space (a preset's) goes:
    the sparsity is then what the pruner reaches, a result, not a knob."""
    trial = raw.get("trial") if isinstance(raw.get("trial"), dict) else {}
    space = raw.get("space") if isinstance(raw.get("space"), dict) else {}
    if "trial.sparsity" not in space or (trial.get("target_speedup") is None and "trial.target_speedup" not in space):
        return raw
    raw = {**raw, "space": {key: value for key, value in space.items() if key != "trial.sparsity"}}
    search = raw.get("search") if isinstance(raw.get("search"), dict) else {}
    points = search.get("starting_points")
    if isinstance(points, list):  # a starting point's sparsity went with the dimension
        points = [{k: v for k, v in p.items() if k != "trial.sparsity"} if isinstance(p, dict) else p for p in points]
        raw["search"] = {**search, "starting_points": points}
    return raw


def prunes_to_speed(config: Config) -> bool:
    """Whether a trial of this search may prune to a speed-up (it is set, or searched)."""
    searched = "trial.target_speedup" in config.space and config.space["trial.target_speedup"].is_searched
    return config.trial.target_speedup is not None or searched


def speed_table_settings(config: Config) -> list[tuple[str, str]]:
    """The (runtime, inference precision) pairs whose latency tables the trials will read: every
    pair the space can combine that the runtime serves; none when no trial prunes to a speed."""
    if not prunes_to_speed(config):
        return []

    def offered(key: str, default: Any) -> list[Any]:
        dimension = config.space.get(key)
        values = dimension.values() if dimension is not None else None
        return values if values is not None else [default]

    return [(runtime, precision) for runtime in offered("trial.runtime", config.trial.runtime)
            for precision in offered("trial.inference_precision", config.trial.inference_precision)
            if not pairing_problems(runtime, precision)]


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
    """An early-stopping scheduler needs rungs on evaluation steps and objectives a rung can rank."""
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
    grace = search.grace_steps or trial.eval_every
    rungs = rung_steps(grace, search.reduction_factor, trial.max_steps)
    if not rungs:
        problems.append(f"{key}: no rung before the last step: search.grace_steps ({grace}) must be below "
                        f"trial.max_steps ({trial.max_steps})")
    off_report = [step for step in rungs if step % trial.eval_every]
    if off_report:
        problems.append(f"search.grace_steps = {grace}: rungs at steps {', '.join(map(str, rungs))} must be "
                        f"evaluation steps, multiples of trial.eval_every ({trial.eval_every})")
    return problems


def rung_steps(grace_steps: int, reduction_factor: int, max_steps: int) -> list[int]:
    """The steps at which trials are ranked: grace, grace * eta, grace * eta^2, ... below max_steps.

    The last step is not a rung: a trial that reaches it has finished.
    """
    steps, step = [], grace_steps
    while step < max_steps:
        steps.append(step)
        step *= reduction_factor
    return steps


def _unique(items: list[str]) -> list[str]:
    return list(dict.fromkeys(items))


# --------------------------------------------------------------------------- checks


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
            lines.append(f"{key} = {error.get('input')!r}: {message}")
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


def _family_problems(raw: dict[str, Any]) -> list[str]:
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
    finite = {key: dim.values() for key, dim in config.space.items() if dim.is_searched and dim.values()}
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


# --------------------------------------------------------------------------- secrets

#: Names the study's database in full (password included) without writing it anywhere.
STORAGE_ENV = "PRUNETUNE_STORAGE"
MASK = "***"


def redact_url(url: str) -> str:
    """``url`` with its password masked (``postgresql://user:***@host/db``): safe to write or print."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        return make_url(url).render_as_string(hide_password=True)
    except (ArgumentError, ValueError):
        # Not a URL SQLAlchemy can parse (so not one it could connect to either): mask
        # whatever sits between ``user:`` and ``@`` all the same.
        return re.sub(r"(//[^/:@]*):[^/@]*@", rf"\1:{MASK}@", url)


def storage_url(configured: str | None, default: str) -> str:
    """The study's database: ``PRUNETUNE_STORAGE``, else ``search.storage``, else ``default``.

    A configuration read back from a run directory has the password masked; then the full URL
    must come from the environment.
    """
    url = os.environ.get(STORAGE_ENV) or configured or default
    if f":{MASK}@" in url:
        raise ConfigError(f"search.storage = {url!r}: the password is not stored in the run directory; set "
                          f"{STORAGE_ENV} to the full URL to reach this study")
    return url


# --------------------------------------------------------------------------- helpers


def _set_dotted(raw: dict[str, Any], dotted: str, value: Any) -> None:
    node = raw
    parts = dotted.split(".")
    if parts[0] == "space" and len(parts) > 2:  # the space's keys are dotted trial keys themselves
        parts = [parts[0], ".".join(parts[1:])]
    for part in parts[:-1]:
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        if not isinstance(child, dict):
            raise ConfigError(f"{dotted}: {part!r} holds {child!r}, not a section")
        node = child
    node[parts[-1]] = value


def flatten_dotted(mapping: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"trial": {"latency": {"batch_size": 1}}}`` -> ``{"trial.latency.batch_size": 1}``."""
    flat: dict[str, Any] = {}
    for key, value in mapping.items():
        if isinstance(value, Mapping):
            flat.update(flatten_dotted(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def get_dotted(raw: dict[str, Any], dotted: str) -> Any:
    node: Any = raw
    for part in dotted.split("."):
        node = node[part]
    return node


def dump_yaml(config: Config, path: str | Path) -> None:
    Path(path).write_text(yaml.safe_dump(config.to_dict(), sort_keys=False))
