"""One searched dimension: ``{uniform: [lo, hi]}``, ``{loguniform: [lo, hi]}``,
``{int: [lo, hi]}``, ``{choice: [a, b, ...]}`` or ``{fixed: value}``.

The YAML form is the short one-key mapping above; in memory a dimension is a frozen
model with its kind and bounds, and it serialises back to the short form so that a
resolved ``config.yaml`` reads like the file the user wrote.
"""

from __future__ import annotations

import math
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, model_serializer, model_validator

DimensionKind = Literal["uniform", "loguniform", "int", "choice", "fixed"]
KINDS: tuple[str, ...] = DimensionKind.__args__
RANGE_KINDS = ("uniform", "loguniform", "int")
#: Optional keys beside the kind: a grid step (uniform, int) or log sampling (int).
OPTION_KEYS = ("step", "log")

SHAPES = (
    "{uniform: [low, high]}, {loguniform: [low, high]}, {int: [low, high]}, "
    "{choice: [a, b, ...]}, {fixed: value}"
)

Scalar = bool | int | float | str | None


class Dimension(BaseModel):
    """A frozen, validated dimension; build it from the short YAML mapping."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: DimensionKind
    low: int | float | None = None
    high: int | float | None = None
    choices: tuple[Scalar, ...] | None = None
    value: Any = None
    step: int | float | None = None
    log: bool = False

    # ------------------------------------------------------------------ YAML in and out

    @model_validator(mode="before")
    @classmethod
    def _from_short_form(cls, data: Any) -> Any:
        if isinstance(data, Dimension) or (isinstance(data, dict) and "kind" in data):
            return data
        if not isinstance(data, dict):
            raise ValueError(f"expected a mapping, one of {SHAPES}")
        kinds = [key for key in data if key in KINDS]
        unknown = [key for key in data if key not in KINDS and key not in OPTION_KEYS]
        if len(kinds) != 1 or unknown:
            raise ValueError(f"expected exactly one of {SHAPES} (options: step, log)")
        kind = kinds[0]
        options = {key: data[key] for key in OPTION_KEYS if key in data}
        argument = data[kind]
        if kind in RANGE_KINDS:
            if not isinstance(argument, (list, tuple)) or len(argument) != 2:
                raise ValueError(f"{kind}: expected [low, high], got {argument!r}")
            return {"kind": kind, "low": argument[0], "high": argument[1], **options}
        if options:
            raise ValueError(f"{kind}: options {sorted(options)} apply to uniform and int only")
        if kind == "choice":
            if not isinstance(argument, (list, tuple)):
                raise ValueError(f"choice: expected a list of values, got {argument!r}")
            return {"kind": kind, "choices": tuple(argument)}
        return {"kind": kind, "value": argument}

    @model_serializer
    def _to_short_form(self) -> dict[str, Any]:
        if self.kind in RANGE_KINDS:
            short: dict[str, Any] = {self.kind: [self.low, self.high]}
            if self.step is not None:
                short["step"] = self.step
            if self.log:
                short["log"] = True
            return short
        if self.kind == "choice":
            return {"choice": list(self.choices or ())}
        return {"fixed": self.value}

    # ------------------------------------------------------------------ consistency

    @model_validator(mode="after")
    def _consistent(self) -> "Dimension":
        if self.kind in RANGE_KINDS:
            self._check_range()
        elif self.kind == "choice":
            self._check_choices()
        return self

    def _check_range(self) -> None:
        low, high = self.low, self.high
        if low is None or high is None or isinstance(low, bool) or isinstance(high, bool):
            raise ValueError(f"{self.kind}: low and high must be numbers, got [{low!r}, {high!r}]")
        if not (math.isfinite(low) and math.isfinite(high)):
            raise ValueError(f"{self.kind}: bounds must be finite, got [{low}, {high}]")
        if not low < high:
            raise ValueError(f"{self.kind}: `low < high` must hold, but got (low={low}, high={high})")
        if self.kind == "loguniform" and low <= 0:
            raise ValueError(f"loguniform: low must be > 0, got {low}")
        if self.kind == "int":
            self._check_int_range()
        if self.step is not None and (self.step <= 0 or self.kind == "loguniform"):
            raise ValueError(f"{self.kind}: step must be > 0 and applies to uniform and int only, got {self.step}")
        if self.log and self.kind != "int":
            raise ValueError(f"{self.kind}: log applies to int only (use loguniform for floats)")

    def _check_int_range(self) -> None:
        for name in ("low", "high", "step"):
            value = getattr(self, name)
            if value is not None and float(value) != int(value):
                raise ValueError(f"int: {name} must be an integer, got {value}")
        if self.log and (self.low < 1 or self.step not in (None, 1)):
            raise ValueError(f"int with log: low must be >= 1 and step 1, got low={self.low}, step={self.step}")

    def _check_choices(self) -> None:
        choices = self.choices or ()
        if not choices:
            raise ValueError("choice: expected at least one value")
        if len(set(map(repr, choices))) != len(choices):
            raise ValueError(f"choice: values must be distinct, got {list(choices)}")

    # ------------------------------------------------------------------ queries

    @property
    def is_searched(self) -> bool:
        """Fixed dimensions are applied to the base config; only the others reach the sampler."""
        return self.kind != "fixed"

    def extremes(self) -> list[Any]:
        """The values that bound everything this dimension can produce."""
        if self.kind in RANGE_KINDS:
            return [self._typed(self.low), self._typed(self.high)]
        if self.kind == "choice":
            return list(self.choices or ())
        return [self.value]

    def values(self, limit: int = 512) -> list[Any] | None:
        """Every value the dimension can produce, when finitely many (at most ``limit``)."""
        if self.kind == "choice":
            return list(self.choices or ())
        if self.kind == "fixed":
            return [self.value]
        if self.kind == "int":
            step = int(self.step or 1)
            count = (int(self.high) - int(self.low)) // step + 1
            return list(range(int(self.low), int(self.high) + 1, step)) if count <= limit else None
        return None

    def contains(self, value: Any) -> bool:
        if self.kind == "choice":
            return any(same_value(value, choice) for choice in self.choices or ())
        if self.kind == "fixed":
            return same_value(value, self.value)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return False
        if self.kind == "int" and float(value) != int(value):
            return False
        return self.low <= value <= self.high

    def default(self) -> Any:
        """A representative value: the first choice, or the middle of a range."""
        if self.kind == "choice":
            return (self.choices or (None,))[0]
        if self.kind == "fixed":
            return self.value
        if self.kind == "loguniform":
            return math.sqrt(self.low * self.high)
        middle = (self.low + self.high) / 2
        return int(round(middle)) if self.kind == "int" else middle

    def _typed(self, bound: float) -> int | float:
        return int(bound) if self.kind == "int" else float(bound)

    def to_optuna(self):
        """The Optuna distribution for a searched dimension (imports Optuna lazily)."""
        from optuna.distributions import (
            CategoricalDistribution,
            FloatDistribution,
            IntDistribution,
        )

        if self.kind == "uniform":
            return FloatDistribution(float(self.low), float(self.high), step=self.step)
        if self.kind == "loguniform":
            return FloatDistribution(float(self.low), float(self.high), log=True)
        if self.kind == "int":
            return IntDistribution(int(self.low), int(self.high), step=int(self.step or 1), log=self.log)
        if self.kind == "choice":
            return CategoricalDistribution(list(self.choices or ()))
        raise ValueError(f"a fixed dimension ({self.value!r}) is not sampled")


def same_value(a: Any, b: Any) -> bool:
    """Equality that keeps True apart from 1 (YAML booleans are not numbers here)."""
    return type(a) is type(b) and a == b or (
        not isinstance(a, bool) and not isinstance(b, bool)
        and isinstance(a, (int, float)) and isinstance(b, (int, float)) and a == b
    )
