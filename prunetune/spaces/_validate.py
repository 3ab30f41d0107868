"""Check a ``space`` section against what a trial accepts, before anything starts.

Every point the sampler may draw must make a valid trial configuration. The trial's own
pydantic model is the single source of its ranges: each searched key is checked by
building trial configurations at the dimension's extreme values (and, for small spaces,
at every corner, which catches cross-field rules such as warm-up + cool-down < 1).
The trial model is passed in rather than imported, so that ``prunetune.config`` can
import this module without a cycle.
"""

from __future__ import annotations

import itertools
from typing import Any, Mapping

from pydantic import BaseModel, ValidationError

from prunetune.spaces._dimensions import Dimension

#: Above this many corners only single-key extremes are checked (the product explodes).
MAX_CORNERS = 256
TRIAL_PREFIX = "trial."


def parse_space(raw: Mapping[str, Any]) -> dict[str, Dimension]:
    """The dimensions of a raw ``space`` mapping; malformed entries are left out (pydantic reports them)."""
    dimensions = {}
    for key, spec in (raw or {}).items():
        try:
            dimensions[str(key)] = Dimension.model_validate(spec)
        except ValidationError:
            continue
    return dimensions


def leaf_fields(model: type[BaseModel], prefix: str = TRIAL_PREFIX) -> list[tuple[str, Any]]:
    """Every leaf field of ``model``, dotted (``trial.latency.seq_len``), with its annotation."""
    leaves = []
    for name, field in model.model_fields.items():
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            leaves += leaf_fields(annotation, f"{prefix}{name}.")
        else:
            leaves.append((f"{prefix}{name}", annotation))
    return leaves


def searchable_keys(trial_model: type[BaseModel], prefix: str = TRIAL_PREFIX) -> list[str]:
    """Every leaf key of the trial configuration, dotted: ``trial.sparsity``, ``trial.latency.seq_len``."""
    return [key for key, _ in leaf_fields(trial_model, prefix)]


def space_problems(
    space: Mapping[str, Any],
    trial: Mapping[str, Any],
    *,
    trial_model: type[BaseModel],
    gpus_per_trial: float = 0,
) -> list[str]:
    """Every problem of ``space`` against the trial section ``trial`` (raw mappings)."""
    if not isinstance(space, Mapping):
        return []  # pydantic reports a non-mapping section
    known = searchable_keys(trial_model)
    problems = [_unknown_key(key, known) for key in space if key not in known]
    dimensions = {key: dim for key, dim in parse_space(space).items() if key in known}
    base = _valid_base(trial, trial_model)
    for key, dimension in dimensions.items():
        problems += _dimension_problems(key, dimension, base, trial_model)
    problems += _corner_problems(dimensions, base, trial_model)
    problems += _device_problems(dimensions, gpus_per_trial)
    return problems


def _unknown_key(key: Any, known: list[str]) -> str:
    return f"space.{key}: not a searchable key; searchable keys: {', '.join(known)}"


def _valid_base(trial: Mapping[str, Any], trial_model: type[BaseModel]) -> dict[str, Any]:
    """The user's trial section if it validates, else the defaults (its own errors are reported elsewhere)."""
    raw = dict(trial) if isinstance(trial, Mapping) else {}
    try:
        return trial_model.model_validate(raw).model_dump(mode="json")
    except ValidationError:
        return trial_model().model_dump(mode="json")


def _dimension_problems(key: str, dimension: Dimension, base: dict, trial_model: type[BaseModel]) -> list[str]:
    field_path = key.removeprefix(TRIAL_PREFIX).split(".")
    if dimension.kind in ("uniform", "loguniform") and _is_integer_field(trial_model, field_path):
        return [f"space.{key} = {dimension.model_dump()}: {key} takes integers; use {{int: [low, high]}} or {{choice: [...]}}"]
    problems = []
    for value in dimension.extremes():
        error = _field_error(trial_model, base, {tuple(field_path): value}, field_path)
        if error:
            problems.append(f"space.{key} = {dimension.model_dump()}: value {value!r} is not accepted by {key}: {error}")
    return problems


def _is_integer_field(trial_model: type[BaseModel], field_path: list[str]) -> bool:
    model: type[BaseModel] = trial_model
    for part in field_path[:-1]:
        model = model.model_fields[part].annotation
    annotation = model.model_fields[field_path[-1]].annotation
    return annotation is int or annotation == (int | None)


def _with_values(base: dict, values: Mapping[tuple[str, ...], Any]) -> dict:
    raw = {k: dict(v) if isinstance(v, dict) else v for k, v in base.items()}
    for path, value in values.items():
        node = raw
        for part in path[:-1]:
            node = node.setdefault(part, {})
        node[path[-1]] = value
    return raw


def _field_error(trial_model, base: dict, values: Mapping, field_path: list[str]) -> str | None:
    """Pydantic's message for ``field_path`` when ``values`` are set on ``base`` (None when valid)."""
    try:
        trial_model.model_validate(_with_values(base, values))
    except ValidationError as exc:
        for error in exc.errors():
            if [str(part) for part in error["loc"]] == field_path:
                return error["msg"].removeprefix("Value error, ")
    return None


def _corner_problems(dimensions: dict[str, Dimension], base: dict, trial_model: type[BaseModel]) -> list[str]:
    """Rules that span several keys (no single field to blame) checked at the corners of the space.

    Every corner when there are at most MAX_CORNERS; beyond, every corner of every pair of
    searched keys (the others at the trial's values): the trial's cross-key rules each
    relate two keys, so the pairs find every violation the full product would.
    """
    searched = {key: dim.extremes() for key, dim in dimensions.items()}
    if len(searched) < 2:
        return []
    corners = 1
    for extremes in searched.values():
        corners *= len(extremes)
    groups = [list(searched)] if corners <= MAX_CORNERS else [list(pair) for pair in itertools.combinations(searched, 2)]
    leaves = {tuple(key.removeprefix(TRIAL_PREFIX).split(".")) for key in searchable_keys(trial_model)}
    for keys in groups:
        paths = [tuple(key.removeprefix(TRIAL_PREFIX).split(".")) for key in keys]
        for corner in itertools.product(*(searched[key] for key in keys)):
            message = _cross_key_error(trial_model, _with_values(base, dict(zip(paths, corner))), leaves)
            if message:
                point = ", ".join(f"{key}={value!r}" for key, value in zip(keys, corner))
                return [f"space: the point ({point}) is not a valid trial: {message}"]
    return []


def _cross_key_error(trial_model, raw: dict, leaves: set[tuple[str, ...]]) -> str | None:
    """The first error that no single key carries (a rule over the model or one of its sections)."""
    try:
        trial_model.model_validate(raw)
    except ValidationError as exc:
        for error in exc.errors():
            if tuple(str(part) for part in error["loc"]) not in leaves:
                return error["msg"].removeprefix("Value error, ")
    return None


def _device_problems(dimensions: dict[str, Dimension], gpus_per_trial: float) -> list[str]:
    """fp16 training and CUDA devices need a GPU per trial; say so before any trial fails on it."""
    if gpus_per_trial > 0:
        return []
    problems = []
    precision = dimensions.get("trial.precision")
    if precision is not None and precision.contains("fp16"):
        problems.append(
            f"space.trial.precision = {precision.model_dump()} offers fp16, but cluster.gpus_per_trial = "
            f"{gpus_per_trial}: fp16 training needs a CUDA GPU; give each trial a GPU (fractions such as "
            "0.25 pack trials on one GPU) or search fp32/bf16 only"
        )
    inference = dimensions.get("trial.inference_precision")
    if inference is not None and inference.contains("sparse24"):
        problems.append(
            f"space.trial.inference_precision = {inference.model_dump()} offers sparse24, but "
            f"cluster.gpus_per_trial = {gpus_per_trial}: 2:4 sparse kernels need a CUDA GPU of compute "
            "capability 8.0 or newer"
        )
    device = dimensions.get("trial.device")
    if device is not None and any(str(v).startswith("cuda") for v in device.extremes()):
        problems.append(
            f"space.trial.device = {device.model_dump()} offers a CUDA device, but cluster.gpus_per_trial = "
            f"{gpus_per_trial}"
        )
    return problems


def offered_values(key: str, dimensions: Mapping[str, Dimension], base_value: Any) -> list[Any] | None:
    """Every value a search gives ``key``: the space's (when finite) or the base config's."""
    dimension = dimensions.get(key)
    if dimension is None:
        return [base_value]
    return dimension.values()


def _section(raw: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    value = raw.get(name)
    return value if isinstance(value, Mapping) else {}


def _number(value: Any, default: float) -> float:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else default


def config_space_problems(raw: Mapping[str, Any], *, trial_model: type[BaseModel]) -> list[str]:
    """Problems of a whole raw config's ``space`` and ``search.starting_points`` against its trial."""
    space = raw.get("space") or {}
    gpus = _number(_section(raw, "cluster").get("gpus_per_trial"), 0.0)
    problems = space_problems(space, _section(raw, "trial"), trial_model=trial_model, gpus_per_trial=gpus)
    points = _section(raw, "search").get("starting_points") or []
    if isinstance(space, Mapping) and isinstance(points, list):
        problems += starting_point_problems(points, parse_space(space))
    return problems


def starting_point_problems(points: list[Any], dimensions: Mapping[str, Dimension]) -> list[str]:
    """A user's starting point may only name searched keys, with values the space can produce."""
    problems = []
    searched = [key for key, dim in dimensions.items() if dim.is_searched]
    for index, point in enumerate(points):
        where = f"search.starting_points.{index}"
        if not isinstance(point, Mapping):
            problems.append(f"{where} = {point!r}: expected a mapping of searched keys to values")
            continue
        for key, value in point.items():
            if key not in searched:
                problems.append(f"{where}.{key}: not a searched key; searched keys: {', '.join(searched) or 'none'}")
            elif not dimensions[key].contains(value):
                problems.append(f"{where}.{key} = {value!r}: outside space.{key} = {dimensions[key].model_dump()}")
    return problems
