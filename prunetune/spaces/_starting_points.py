"""Known-good trial configurations from the literature, fitted to a search space.

Every search evaluates these first (Optuna runs enqueued points before sampling), so the
front starts from configurations that published work found good instead of from random
points. A value that the space cannot produce (for example fp16 in a CPU-only space, or a
32x32 block on a model whose heads are 8 wide) is replaced by the base configuration's
value, or by the dimension's default, and duplicates are dropped.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

from prunetune.spaces._dimensions import Dimension, same_value


@dataclass(frozen=True)
class StartingPoint:
    name: str
    source: str
    values: Mapping[str, Any] = field(default_factory=dict)


#: The nn_pruning recipe: hybrid block movement pruning (32x32 attention blocks, 1-D FFN),
#: distillation at T = 2 with alpha = 0.9 (METHODS.md, sections 1 and 3).
_NN_PRUNING = {"trial.method": "movement", "trial.block_size": 32, "trial.temperature": 2.0, "trial.alpha": 0.9}

KNOWN_GOOD: tuple[StartingPoint, ...] = (
    StartingPoint(
        "mirashi-25-kd-fp16",
        "Mirashi et al. 2024 (arXiv 2409.14162): 25% movement pruning + distillation + fp16, "
        "2.56x faster at the baseline's accuracy",
        {**_NN_PRUNING, "trial.sparsity": 0.25, "trial.precision": "fp16"},
    ),
    StartingPoint(
        "nn-pruning-hybrid-50",
        "Lagunas et al. 2021 (arXiv 2109.04838): hybrid block movement pruning, nn_pruning defaults",
        {**_NN_PRUNING, "trial.sparsity": 0.5},
    ),
    StartingPoint(
        "nn-pruning-hybrid-mnli-2x",
        "Lagunas et al. 2021: MNLI, -65% parameters at 2.0x speed for about -1 accuracy point",
        {**_NN_PRUNING, "trial.sparsity": 0.65},
    ),
)


def fit_point(values: Mapping[str, Any], dimensions: Mapping[str, Dimension], base: Mapping[str, Any]) -> dict[str, Any]:
    """A complete point of the searched dimensions, taking ``values`` where the space allows them.

    ``base`` maps dotted trial keys to the base configuration's values.
    """
    point = {}
    for key, dimension in dimensions.items():
        if not dimension.is_searched:
            continue
        for candidate in (values.get(key), base.get(key)):
            if candidate is not None and dimension.contains(candidate):
                point[key] = _as_in_space(candidate, dimension)
                break
        else:
            point[key] = dimension.default()
    return point


def _as_in_space(value: Any, dimension: Dimension) -> Any:
    """The space's own spelling of ``value`` (32 not 32.0 for a categorical of ints)."""
    if dimension.kind == "choice":
        return next(c for c in dimension.choices or () if same_value(c, value))
    if dimension.kind == "int":
        return int(value)
    return float(value)


def starting_points(
    dimensions: Mapping[str, Dimension],
    base: Mapping[str, Any],
    *,
    extra: list[Mapping[str, Any]] = (),
    known_good: bool = True,
    limit: int | None = None,
) -> list[dict[str, Any]]:
    """Points to evaluate first: every one of the user's ``extra`` points, then the published
    ones while there are fewer than ``limit`` points, deduplicated."""
    if not any(dim.is_searched for dim in dimensions.values()):
        return []
    points: list[dict[str, Any]] = []
    for values in extra:
        _add_unique(points, fit_point(values, dimensions, base))
    for known in KNOWN_GOOD if known_good else ():
        if limit is not None and len(points) >= limit:
            break
        _add_unique(points, fit_point(known.values, dimensions, base))
    return points


def _add_unique(points: list[dict[str, Any]], point: dict[str, Any]) -> None:
    if point not in points:
        points.append(point)
