"""How far the front's quality figures can be trusted: intervals, held-out figures, and which
trials the data can tell apart.

Each trial reports its headline metric and drop with 95% paired-bootstrap intervals on the
evaluation split (which the search ranked on, so the best trials there are biased upward)
and, once evaluated, on the held-out test split (unbiased). Two trials are compared on the
same resampled examples from their saved per-example scores
(``trials/<id>/example_scores.npz``), so a difference of a few examples is called what it is.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import pandas as pd

from prunetune import metrics as M
from prunetune.analysis._format import format_value
from prunetune.intervals import difference_interval, excludes_zero, load_example_scores
from prunetune.names import TRIAL_ID


def task_kind(run) -> str:
    return str(((run.config.get("task") or {}).get("kind")) or M.DEFAULT_TASK_KIND)


def headline_of(run) -> str:
    return M.headline_metric(task_kind(run))


def interval(row: Mapping[str, Any], key: str) -> tuple[float, float] | None:
    """``key``'s 95% interval in ``row``, None when it was not measured."""
    low, high = (_number(row.get(k)) for k in M.interval_keys(key))
    return None if low is None or high is None else (low, high)


def with_interval(key: str, row: Mapping[str, Any]) -> str:
    """``0.0090 [-0.0021, 0.0210]``: a figure and its interval, as a table cell."""
    found = interval(row, key)
    value = format_value(key, row.get(key))
    if found is None:
        return value
    return f"{value} [{format_value(key, found[0])}, {format_value(key, found[1])}]"


def not_distinguishable_from_zero(row: Mapping[str, Any], key: str) -> bool:
    found = interval(row, key)
    return found is not None and not excludes_zero(*found)


def indistinguishable_pairs(run, trial_ids: list[str], *, split: str) -> dict[str, list[str]]:
    """For each trial, the others whose headline metric on ``split`` the data cannot tell apart
    from its own (paired over the same examples); trials without saved scores are left out."""
    scores = {trial_id: load_example_scores(run.trial_dir(trial_id) / M.EXAMPLE_SCORES_FILE, split)
              for trial_id in trial_ids}
    scores = {trial_id: found for trial_id, found in scores.items() if found is not None}
    alike: dict[str, list[str]] = {trial_id: [] for trial_id in scores}
    ids = list(scores)
    for i, first in enumerate(ids):
        for second in ids[i + 1:]:
            if len(scores[first]) != len(scores[second]):
                continue  # scored on different examples: nothing to pair
            if not excludes_zero(*difference_interval(scores[first], scores[second])):
                alike[first].append(second)
                alike[second].append(first)
    return alike


def uncertainty_notes(run, front: pd.DataFrame) -> list[str]:
    """Lines for the report: where each figure comes from, and what the data cannot tell apart."""
    headline = headline_of(run)
    drop = M.drop_key(headline)
    held_out = M.held_out_key(drop)
    lines = [f"{drop}: on the {_eval_split(run)} split the search ranked on (the best of many trials is biased "
             f"upward there); {held_out}: on the held-out {M.HELD_OUT_SPLIT} split, never ranked on (unbiased). "
             "[low, high]: 95% paired-bootstrap interval."]
    if held_out not in front or front[held_out].isna().all():
        lines.append(f"The front is not evaluated on the {M.HELD_OUT_SPLIT} split yet: "
                     f"prunetune report {run.run_dir} --evaluate-test")
    for _, row in front.iterrows():
        zero = [key for key in (drop, held_out) if not_distinguishable_from_zero(row, key)]
        if zero:
            lines.append(f"  {row[TRIAL_ID]}: {' and '.join(zero)} not distinguishable from zero")
    alike = indistinguishable_pairs(run, [str(t) for t in front[TRIAL_ID]], split=_eval_split(run))
    for trial_id, others in alike.items():
        if others:
            lines.append(f"  {trial_id}: {headline} not distinguishable from {', '.join(others)} "
                         f"(same {_eval_split(run)} examples, 95% interval of the difference spans zero)")
    return lines


def _eval_split(run) -> str:
    return str(((run.config.get("task") or {}).get("eval_split")) or "validation")


def _number(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None
