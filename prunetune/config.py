"""Typed, validated configuration: YAML in, frozen objects out.

``load()`` reads a YAML file or a built-in preset, applies ``--set key.path=value``
overrides, validates everything (including block sizes against the teacher's
dimensions, read from its config.json only) and raises one :class:`ConfigError`
listing every problem before any model is loaded.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from prunetune.builtins import BUILTIN_DATASETS, ModelDims, read_model_dims
from prunetune.errors import ConfigError, PrunetuneError

PRESETS_DIR = Path(__file__).parent / "spaces" / "presets"

Method = Literal["movement", "magnitude"]
TrainPrecision = Literal["fp32", "fp16", "bf16"]
InferencePrecision = Literal["fp32", "fp16", "bf16", "int8"]

METHODS: tuple[str, ...] = Method.__args__
TRAIN_PRECISIONS: tuple[str, ...] = TrainPrecision.__args__
INFERENCE_PRECISIONS: tuple[str, ...] = InferencePrecision.__args__


class _Section(BaseModel):
    """Frozen, strict: unknown keys are errors, values are never silently coerced to str."""

    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)


class TaskConfig(_Section):
    dataset: str = Field("bbc_news", description="built-in name | .csv/.json/.jsonl/.parquet path | HF dataset id")
    text_column: str = "text"
    label_column: str = "label"
    max_length: int = Field(128, ge=8, le=4096)
    seed: int = 0
    validation_fraction: float = Field(0.15, gt=0, lt=0.5)
    test_fraction: float = Field(0.15, gt=0, lt=0.5)
    eval_split: Literal["validation", "test"] = "validation"
    max_train_samples: int | None = Field(None, ge=2)
    max_eval_samples: int | None = Field(None, ge=2)
    hf_config: str | None = Field(None, description="configuration name of a HF dataset")


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
    min_run_time: float = Field(1.0, gt=0, description="seconds of timing per model")
    threads: int | None = Field(None, ge=1, description="CPU threads; default: torch's current count")


class EmissionsConfig(_Section):
    country_iso_code: str = Field("USA", min_length=3, max_length=3)
    measure_power_secs: float = Field(5.0, gt=0)


class TrialConfig(_Section):
    method: Method = "movement"
    sparsity: float = Field(0.5, ge=0, lt=1)
    block_size: int = Field(32, ge=1)
    temperature: float = Field(2.0, gt=0)
    alpha: float = Field(0.9, ge=0, le=1, description="weight of distillation vs task loss")
    precision: TrainPrecision = "fp32"
    inference_precision: InferencePrecision = "fp32"
    max_steps: int = Field(300, ge=1)
    batch_size: int = Field(16, ge=1)
    learning_rate: float = Field(3e-5, gt=0, lt=1)
    score_learning_rate: float = Field(1e-2, gt=0, lt=10, description="learning rate of mask scores")
    warmup_fraction: float = Field(0.1, ge=0, lt=1, description="dense steps before pruning starts")
    cooldown_fraction: float = Field(0.2, ge=0, lt=1, description="steps at the final sparsity")
    eval_every: int = Field(50, ge=1)
    seed: int = 0
    device: str = Field("auto", pattern=r"^(auto|cpu|cuda(:\d+)?)$")
    latency: LatencyConfig = LatencyConfig()
    emissions: EmissionsConfig = EmissionsConfig()

    @model_validator(mode="after")
    def _schedule_fits(self) -> "TrialConfig":
        if self.warmup_fraction + self.cooldown_fraction >= 1:
            raise ValueError(
                "trial.warmup_fraction + trial.cooldown_fraction must be < 1, got "
                f"{self.warmup_fraction} + {self.cooldown_fraction}"
            )
        return self


class Config(_Section):
    """The whole configuration of a trial (and, with later sections, of a search)."""

    task: TaskConfig = TaskConfig()
    teacher: TeacherConfig = TeacherConfig()
    trial: TrialConfig = TrialConfig()

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")

    def with_values(self, values: dict[str, Any]) -> "Config":
        """A validated copy with dotted keys (``{"trial.sparsity": 0.7}``) replaced."""
        raw = self.to_dict()
        for key, value in values.items():
            _set_dotted(raw, key, value)
        return validate(raw)


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
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping of sections, got {type(raw).__name__}")
    return raw, str(path)


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
    try:
        config = Config.model_validate(raw)
    except ValidationError as exc:
        problems += pydantic_problems(exc)
    section = lambda name: raw.get(name) if isinstance(raw.get(name), dict) else {}  # noqa: E731
    problems += check_dataset(str(section("task").get("dataset", TaskConfig().dataset)))
    if check_model:
        problems += check_against_model(
            str(section("teacher").get("model", TeacherConfig().model)),
            _block_sizes_in(raw),
        )
    if problems:
        raise ConfigError(_unique(problems), source=source)
    assert config is not None  # no problems means pydantic accepted it
    return config


def _block_sizes_in(raw: dict[str, Any]) -> list[int]:
    """Integer block sizes named anywhere a trial may take them (fixed value or search space)."""
    trial = raw.get("trial") if isinstance(raw.get("trial"), dict) else {}
    value = trial.get("block_size", TrialConfig().block_size)
    return [value] if isinstance(value, int) and not isinstance(value, bool) and value >= 1 else []


def _unique(items: list[str]) -> list[str]:
    return list(dict.fromkeys(items))


# --------------------------------------------------------------------------- checks


def pydantic_problems(exc: ValidationError) -> list[str]:
    """One readable line per pydantic error: key, value and what was expected."""
    lines = []
    for error in exc.errors():
        key = ".".join(str(part) for part in error["loc"]) or "<root>"
        message = error["msg"].removeprefix("Value error, ")
        if error["type"] == "extra_forbidden":
            lines.append(f"{key}: unknown key{_known_keys_hint(error['loc'])}")
        elif error["type"] == "missing":
            lines.append(f"{key}: required key is missing")
        else:
            lines.append(f"{key} = {error.get('input')!r}: {message}")
    return lines


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


def valid_block_sizes(dims: ModelDims, candidates=(1, 2, 4, 8, 16, 32, 64, 128)) -> list[int]:
    return [b for b in candidates if block_size_problem(b, dims) is None]


def block_size_problem(block_size: int, dims: ModelDims) -> str | None:
    """Why ``block_size`` cannot tile the attention matrices of ``dims`` (None when it can).

    A block must tile the hidden size and must not straddle a head boundary: it either
    divides the head size or covers whole heads, so that a dead head stays a set of
    whole blocks.
    """
    head = dims.head_size
    tiles_hidden = dims.hidden_size % block_size == 0
    aligned = head % block_size == 0 or block_size % head == 0
    if tiles_hidden and aligned:
        return None
    return (
        f"trial.block_size = {block_size}: must divide the hidden size and either divide "
        f"the head size or be a multiple of it, for {dims.describe()}; "
        f"valid: {valid_block_sizes(dims)}"
    )


def check_against_model(model: str, block_sizes: list[int]) -> list[str]:
    """Problems of ``block_sizes`` for ``model``, read from its config.json only."""
    try:
        dims = read_model_dims(model)
    except PrunetuneError as exc:
        return [str(exc)]
    return [p for p in (block_size_problem(b, dims) for b in block_sizes) if p]


# --------------------------------------------------------------------------- helpers


def _set_dotted(raw: dict[str, Any], dotted: str, value: Any) -> None:
    node = raw
    parts = dotted.split(".")
    for part in parts[:-1]:
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        if not isinstance(child, dict):
            raise ConfigError(f"{dotted}: {part!r} holds {child!r}, not a section")
        node = child
    node[parts[-1]] = value


def get_dotted(raw: dict[str, Any], dotted: str) -> Any:
    node: Any = raw
    for part in dotted.split("."):
        node = node[part]
    return node


def dump_yaml(config: Config, path: str | Path) -> None:
    Path(path).write_text(yaml.safe_dump(config.to_dict(), sort_keys=False))
