"""YAML in, a validated :class:`Config` out: files and presets, ``--set`` overrides, and the one
:class:`ConfigError` that lists every problem before any model is loaded."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from prunetune.config._checks import (
    boolean_problems,
    check_dataset,
    family_problems,
    model_problems,
    pruning_target_problems,
    target_speedup_problems,
    task_kind_problems,
    unused_rung_problems,
)
from prunetune.config._dotted import set_dotted
from prunetune.config._schema import RUNG_KEYS, Config, pydantic_problems
from prunetune.config._secrets import storage_problems
from prunetune.config._trial_schema import TaskConfig, TrialConfig
from prunetune.errors import ConfigError, PrunetuneError
from prunetune.spaces import config_space_problems

PRESETS_DIR = Path(__file__).parent.parent / "spaces" / "presets"


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


#: A configuration is a few kilobytes; a file far larger is the wrong file, and YAML would parse it for minutes.
MAX_CONFIG_BYTES = 1_000_000


def read_yaml_mapping(path: Path, *, error: type[PrunetuneError] = ConfigError) -> dict[str, Any]:
    """The mapping a YAML file holds; ``error`` names the file and what is wrong with it.

    A key given twice in one mapping is refused with both lines: YAML would keep the last
    one without a word.
    """
    size = path.stat().st_size
    if size > MAX_CONFIG_BYTES:
        raise error(f"{path}: {size / 1e6:.1f} MB; expected a YAML configuration (a few kilobytes, at most "
                    f"{MAX_CONFIG_BYTES // 1_000_000} MB): is this the right file?")
    try:
        text = path.read_text(encoding="utf-8")
        duplicates = duplicate_keys(yaml.compose(text, Loader=yaml.SafeLoader))
        raw = yaml.safe_load(text)
    except UnicodeDecodeError:
        raise error(f"{path}: not a text file; expected a YAML configuration") from None
    except yaml.YAMLError as exc:
        raise error(f"{path}: not valid YAML: {exc}") from exc
    if duplicates:
        raise ConfigError(duplicates, source=str(path)) if error is ConfigError else error(f"{path}: {duplicates[0]}")
    if raw is None:
        raise error(f"{path}: empty; expected a mapping of sections ({', '.join(Config.model_fields)}); "
                    "`prunetune presets quickstart` prints one to start from")
    if not isinstance(raw, dict):
        raise error(f"{path}: expected a mapping of sections, got {type(raw).__name__}")
    return raw


def duplicate_keys(node: yaml.Node | None, path: tuple[str, ...] = (), seen: set[int] | None = None) -> list[str]:
    """One line per key given twice in a mapping of the YAML tree ``node``, with both line numbers."""
    seen = set() if seen is None else seen
    if node is None or id(node) in seen:  # an alias repeats a node already walked
        return []
    seen.add(id(node))
    problems: list[str] = []
    if isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            problems += duplicate_keys(item, (*path, str(index)), seen)
    elif isinstance(node, yaml.MappingNode):
        lines: dict[str, int] = {}
        for key_node, value_node in node.value:
            name = str(key_node.value) if isinstance(key_node, yaml.ScalarNode) else "?"
            line = key_node.start_mark.line + 1
            if name in lines and name != "<<":
                what = "section" if not path else "key"
                problems.append(f"{'.'.join((*path, name))}: {what} given twice, at lines {lines[name]} and {line} "
                                "(YAML would keep the second without a word); keep one")
            lines.setdefault(name, line)
            problems += duplicate_keys(value_node, (*path, name), seen)
    return problems


def parse_override(item: str) -> tuple[str, Any]:
    """``"trial.sparsity=0.7"`` -> ``("trial.sparsity", 0.7)``; values are parsed as YAML."""
    if not isinstance(item, str):
        raise ConfigError(f"--set {item!r}: expected a KEY.PATH=VALUE string, e.g. 'trial.sparsity=0.7'")
    key, sep, text = item.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"--set {item!r}: expected KEY.PATH=VALUE, e.g. trial.sparsity=0.7")
    if "" in (part.strip() for part in key.strip().split(".")):
        raise ConfigError(f"--set {item!r}: key {key.strip()!r} has an empty name between dots; expected "
                          "KEY.PATH=VALUE, e.g. trial.sparsity=0.7")
    try:
        value = yaml.safe_load(text) if text.strip() else None
    except yaml.YAMLError:
        value = text
    return key.strip(), value


def apply_overrides(raw: dict[str, Any], overrides: list[str] | None) -> dict[str, Any]:
    """``raw`` with ``KEY.PATH=VALUE`` overrides applied (see :func:`set_values`)."""
    check_override_list(overrides)
    return set_values(raw, dict(parse_override(item) for item in overrides or []))


def check_override_list(overrides: Any) -> None:
    """Overrides are a list of strings: a lone string would be read one character at a time."""
    if isinstance(overrides, (str, bytes)):
        raise ConfigError(f"overrides = {overrides!r}: expected a list of KEY.PATH=VALUE strings, e.g. "
                          f"[{overrides!r}]")


def set_values(raw: dict[str, Any], values: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of ``raw`` with dotted keys set, and what a set value replaces unset with it.

    Setting one pruning target (``trial.sparsity`` or ``trial.target_speedup``) unsets the
    other, and choosing ``search.scheduler: fifo`` unsets the rung settings an early-stopping
    scheduler had: an override replaces a preset's choice. Both in one file are refused.
    """
    raw = copy.deepcopy(raw)
    for key, value in values.items():
        set_dotted(raw, key, value)
    trial = raw.get("trial")
    for given, other in (("sparsity", "target_speedup"), ("target_speedup", "sparsity")):
        if isinstance(trial, dict) and f"trial.{given}" in values and f"trial.{other}" not in values \
                and trial.get(given) is not None and other in trial:
            trial[other] = None
    search = raw.get("search")
    if isinstance(search, dict) and values.get("search.scheduler") == "fifo":
        for name in RUNG_KEYS:
            if f"search.{name}" not in values:
                search.pop(name, None)
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
    problems += boolean_problems(raw) + pruning_target_problems(raw)
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
        problems += unused_rung_problems(config)
        if config.search.storage is not None:
            problems += storage_problems(config.search.storage, here=False)
    if check_model:
        problems += model_problems(config) if config is not None else family_problems(raw)
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


def _unique(items: list[str]) -> list[str]:
    return list(dict.fromkeys(items))


def dump_yaml(config: Config, path: str | Path) -> None:
    """Write ``config`` as YAML, the study's password masked (the full URL comes from ``PRUNETUNE_STORAGE``)."""
    Path(path).write_text(yaml.safe_dump(config.without_secrets().to_dict(), sort_keys=False))
