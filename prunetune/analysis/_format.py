"""How metrics and configuration values are named and printed (tables, plots, model cards)."""

from __future__ import annotations

import math
from typing import Any

from prunetune import metrics as M


def label(key: str) -> str:
    if key.endswith(M.TEST_SUFFIX):
        return f"{label(key.removesuffix(M.TEST_SUFFIX))} (held-out test)"
    return M.METRIC_LABELS.get(key, key.removeprefix("trial."))


def direction_hint(direction: str) -> str:
    return "higher is better" if direction == "max" else "lower is better"


def format_value(key: str, value: Any) -> str:
    """A metric or config value as a table cell: fixed decimals per metric, '-' when missing."""
    if hasattr(value, "item"):  # numpy scalars
        value = value.item()
    key = M.base_metric(key)  # a held-out figure or an interval end prints as its metric does
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    if key in M.INTEGER_METRICS:
        return f"{int(round(value)):,}"
    if key in M.METRIC_DECIMALS:
        return f"{value:.{M.METRIC_DECIMALS[key]}f}"
    if key in M.SCIENTIFIC_METRICS:
        return f"{value:.2e}"
    if isinstance(value, float) and not float(value).is_integer():
        return f"{value:.4g}"
    return str(int(value)) if float(value).is_integer() else str(value)
