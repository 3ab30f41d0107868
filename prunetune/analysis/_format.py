"""How metrics and configuration values are named and printed (tables, plots, model cards)."""

from __future__ import annotations

import math
from typing import Any

from prunetune import metrics as M

#: Human names with units, for axes and table headers.
METRIC_LABELS: dict[str, str] = {
    M.ACCURACY: "accuracy",
    M.F1_MACRO: "macro-F1",
    M.ACCURACY_DROP: "accuracy drop",
    M.LATENCY_MS: "latency (ms)",
    M.LATENCY_P95_MS: "p95 latency (ms)",
    M.SPEEDUP: "speed-up (x)",
    M.EMISSIONS_KG: "emissions (kg CO2-eq)",
    M.ENERGY_KWH: "energy (kWh)",
    M.PARAMS: "parameters",
    M.SPARSITY: "sparsity",
    M.HEADS_PRUNED: "heads pruned",
    M.FFN_KEPT: "FFN kept",
    M.TRAIN_SECONDS: "training (s)",
}

_DECIMALS = {
    M.ACCURACY: 4, M.F1_MACRO: 4, M.ACCURACY_DROP: 4, M.LATENCY_MS: 2, M.LATENCY_P95_MS: 2,
    M.SPEEDUP: 2, M.SPARSITY: 3, M.FFN_KEPT: 3, M.TRAIN_SECONDS: 1,
}


def label(key: str) -> str:
    return METRIC_LABELS.get(key, key.removeprefix("trial."))


def direction_hint(direction: str) -> str:
    return "higher is better" if direction == "max" else "lower is better"


def format_value(key: str, value: Any) -> str:
    """A metric or config value as a table cell: fixed decimals per metric, '-' when missing."""
    if hasattr(value, "item"):  # numpy scalars
        value = value.item()
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    if key in (M.PARAMS, M.HEADS_PRUNED):
        return f"{int(round(value)):,}"
    if key in _DECIMALS:
        return f"{value:.{_DECIMALS[key]}f}"
    if key in (M.EMISSIONS_KG, M.ENERGY_KWH):
        return f"{value:.2e}"
    if isinstance(value, float) and not float(value).is_integer():
        return f"{value:.4g}"
    return str(int(value)) if float(value).is_integer() else str(value)
