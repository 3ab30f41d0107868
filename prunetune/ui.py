"""Terminal output shared by the commands: metric tables through rich."""

from __future__ import annotations

from typing import Any, Mapping

from prunetune.metrics import ALL_METRIC_KEYS, METRIC_DESCRIPTIONS


def format_value(value: Any) -> str:
    if isinstance(value, float):
        if value == 0 or 1e-3 <= abs(value) < 1e5:
            return f"{value:.4g}"
        return f"{value:.3e}"
    return str(value)


def print_metrics(metrics: Mapping[str, Any], *, title: str = "metrics", console=None) -> None:
    """The contract's metrics first, in contract order, then any extra keys."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title, show_lines=False)
    table.add_column("metric", style="bold")
    table.add_column("value", justify="right")
    table.add_column("meaning", style="dim")
    extras = [k for k in metrics if k not in ALL_METRIC_KEYS]
    for key in [*[k for k in ALL_METRIC_KEYS if k in metrics], *extras]:
        table.add_row(key, format_value(metrics[key]), METRIC_DESCRIPTIONS.get(key, ""))
    (console or Console()).print(table)
