"""Choose one trial: the best that satisfies the deployer's constraints, and why.

Constraints are ``max_<metric>`` / ``min_<metric>`` bounds on any metric of the contract
(``max_accuracy_drop``, ``min_accuracy``, ``max_latency_ms``, ``max_emissions_kg``...),
and, when the user asks for them, on the held-out figures and interval ends
(``max_accuracy_drop_test``, ``max_accuracy_drop_ci_high``): selection stays on the
evaluation split unless a constraint names a test column. Given on the command line they
replace the search's ``search.constraints``; otherwise those apply, with its ``drop_bound``
(``upper``: a drop limit bounds the upper end of the drop's 95% interval). Among the feasible trials, only the non-dominated ones (in the run's
objectives) are candidates, and the preference chooses among them:

* ``knee`` (default): the feasible front's knee (closest to the ideal point, each
  objective scaled over that front; see :mod:`prunetune.analysis.front`);
* ``accuracy`` / ``latency`` / ``emissions``: the best in that metric, ties broken by the
  other two.

When no trial is feasible, the closest trials are those with the smallest total
violation, each constraint's excess divided by the range of its metric over the run.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd

from prunetune import metrics as M
from prunetune.analysis import runs as R
from prunetune.analysis._format import format_value, label
from prunetune.analysis.front import (
    ON_FRONT,
    FrontAnalysis,
    knee_index,
    objective_values,
)
from prunetune.analysis.runs import RunData
from prunetune.errors import ConfigError
from prunetune.pareto import nondominated_mask

PREFERENCES = ("knee", "accuracy", "latency", "emissions")
#: Metrics that are fractions: a limit outside [0, 1] can never bind or never be met.
FRACTION_METRICS = (M.ACCURACY, M.F1_MACRO, M.ACCURACY_DROP, M.SPARSITY, M.FFN_KEPT)
_TIE_BREAKS: dict[str, list[tuple[str, str]]] = {
    "accuracy": [(M.ACCURACY, "max"), (M.LATENCY_MS, "min"), (M.EMISSIONS_KG, "min")],
    "latency": [(M.LATENCY_MS, "min"), (M.ACCURACY, "max"), (M.EMISSIONS_KG, "min")],
    "emissions": [(M.EMISSIONS_KG, "min"), (M.ACCURACY, "max"), (M.LATENCY_MS, "min")],
}
VIOLATION = "violation"
#: ``search.constraints.drop_bound``: what its drop limits bound (not a limit itself).
DROP_BOUND = "drop_bound"
CLOSEST_COUNT = 3


@dataclass(frozen=True)
class Constraint:
    """``metric <= limit`` (bound "max") or ``metric >= limit`` (bound "min")."""

    metric: str
    bound: Literal["max", "min"]
    limit: float

    @property
    def name(self) -> str:
        return f"{self.bound}_{self.metric}"

    def excess(self, value: float) -> float:
        """How far ``value`` is on the wrong side of the limit (0 when satisfied, inf when unmeasured)."""
        if value is None or not math.isfinite(value):
            return math.inf
        over = value - self.limit if self.bound == "max" else self.limit - value
        # Metrics such as accuracy_drop are differences of floats: 0.95 - 0.90 must meet a 0.05 limit.
        return over if over > 1e-9 * max(1.0, abs(self.limit)) else 0.0

    def describe(self) -> str:
        return f"{self.metric} {'<=' if self.bound == 'max' else '>='} {format_value(self.metric, self.limit)}"


def parse_constraints(values: dict[str, Any], *, source: str) -> list[Constraint]:
    """``{"max_latency_ms": 5}`` -> constraints; every bad entry is reported at once."""
    constraints, problems = [], []
    values = dict(values or {})
    drop_bound = values.pop(DROP_BOUND, "estimate")
    for name, limit in values.items():
        if limit is None:  # a constraint the config leaves unset
            continue
        bound, _, metric = str(name).partition("_")
        if bound == "max" and drop_bound == "upper" and name in M.CONSTRAINT_METRICS:
            metric = M.constrained_column(name, drop_bound=drop_bound)
        if bound not in ("max", "min") or not _is_constrainable(metric):
            problems.append(f"{source}.{name}: expected max_<metric> or min_<metric> with a metric of "
                            f"{', '.join(M.ALL_METRIC_KEYS)}, or a headline figure's held-out or interval "
                            f"column ({', '.join(sorted(M.UNCERTAINTY_METRICS)[:3])}, ...)")
        elif isinstance(limit, bool) or not isinstance(limit, (int, float)) or not math.isfinite(limit):
            problems.append(f"{source}.{name} = {limit!r}: expected a finite number")
        elif limit < 0 or (M.base_metric(metric) in FRACTION_METRICS and limit > 1):
            bounds = "between 0 and 1" if M.base_metric(metric) in FRACTION_METRICS else "at least 0"
            problems.append(f"{source}.{name} = {limit!r}: {metric} is {bounds}, so the limit must be too")
        else:
            constraints.append(Constraint(metric, bound, float(limit)))
    if problems:
        raise ConfigError(problems)
    return constraints


def _is_constrainable(metric: str) -> bool:
    """A metric of the contract, or a held-out figure or interval end of one."""
    return metric in M.METRIC_DIRECTIONS or (metric in M.UNCERTAINTY_METRICS
                                             and M.base_metric(metric) in M.METRIC_DIRECTIONS)


@dataclass(frozen=True)
class Pick:
    """The chosen trial (None when nothing is feasible), with what led to it."""

    trial: pd.Series | None
    prefer: str
    constraints: list[Constraint]
    constraints_source: str
    finished: int
    feasible: pd.DataFrame
    candidates: pd.DataFrame
    closest: pd.DataFrame = field(default_factory=pd.DataFrame)
    on_run_front: bool = False

    @property
    def found(self) -> bool:
        return self.trial is not None

    @property
    def trial_id(self) -> str | None:
        return None if self.trial is None else str(self.trial[R.TRIAL_ID])


def pick_trial(run: RunData, analysis: FrontAnalysis, *, constraints: dict[str, Any] | None = None,
               prefer: str = "knee") -> Pick:
    """The best feasible trial of ``run`` under ``constraints`` (None: the config's) and ``prefer``."""
    if prefer not in PREFERENCES:
        raise ConfigError(f"--prefer {prefer!r}: expected one of {', '.join(PREFERENCES)}")
    if constraints is None:
        parsed = parse_constraints(run.constraints, source="search.constraints")
        source = "config.yaml search.constraints"
    else:
        parsed, source = parse_constraints(constraints, source="option"), "the command line"
    trials = with_accuracy_drop(analysis.trials, run)
    _check_metrics_present(trials, parsed)
    excess = violations(trials, parsed)
    feasible = trials[excess.sum(axis=1) == 0]
    candidates = feasible_front(feasible, analysis.objectives)
    base = dict(prefer=prefer, constraints=parsed, constraints_source=source or "none", finished=len(trials),
                feasible=feasible, candidates=candidates)
    if candidates.empty:
        return Pick(trial=None, closest=closest_trials(trials, parsed, excess), **base)
    chosen = _choose(candidates, analysis.objectives, prefer)
    return Pick(trial=chosen, on_run_front=bool(chosen[ON_FRONT]), **base)


def with_accuracy_drop(trials: pd.DataFrame, run: RunData) -> pd.DataFrame:
    """Fill ``accuracy_drop`` from the teacher's accuracy where a table lacks it (Optuna-only rows)."""
    teacher_accuracy = run.teacher.get(M.ACCURACY)
    if M.ACCURACY in trials and math.isfinite(teacher_accuracy):
        derived = teacher_accuracy - trials[M.ACCURACY]
        current = trials[M.ACCURACY_DROP] if M.ACCURACY_DROP in trials else derived
        return trials.assign(**{M.ACCURACY_DROP: current.fillna(derived)})
    return trials


def _check_metrics_present(trials: pd.DataFrame, constraints: list[Constraint]) -> None:
    missing = [c for c in constraints if c.metric not in trials or trials[c.metric].isna().all()]
    if missing:
        held_out = any(c.metric.endswith(M.TEST_SUFFIX) or M.TEST_SUFFIX + "_ci" in c.metric for c in missing)
        hint = (f"; evaluate the front on the {M.HELD_OUT_SPLIT} split first: prunetune report RUN_DIR --evaluate-test"
                if held_out else "")
        raise ConfigError(f"constraint(s) {', '.join(c.name for c in missing)}: this run has no values for "
                          f"{', '.join(c.metric for c in missing)}{hint}")


def violations(trials: pd.DataFrame, constraints: list[Constraint]) -> pd.DataFrame:
    """Per trial and constraint: the excess over the limit divided by the metric's range in the run."""
    columns = {}
    for constraint in constraints:
        values = trials[constraint.metric].astype(float)
        scale = _scale(values, constraint.limit)
        columns[constraint.name] = values.map(constraint.excess) / scale
    return pd.DataFrame(columns, index=trials.index)


def _scale(values: pd.Series, limit: float) -> float:
    span = float(values.max() - values.min()) if values.notna().any() else 0.0
    return span if span > 0 else abs(limit) or 1.0


def feasible_front(feasible: pd.DataFrame, objectives: dict[str, str]) -> pd.DataFrame:
    """The feasible trials that no other feasible trial dominates."""
    if feasible.empty:
        return feasible
    mask = nondominated_mask(objective_values(feasible, objectives), list(objectives.values()))
    return feasible[mask]


def _choose(candidates: pd.DataFrame, objectives: dict[str, str], prefer: str) -> pd.Series:
    if prefer == "knee":
        return candidates.iloc[knee_index(objective_values(candidates, objectives), list(objectives.values()))]
    order = [(key, direction) for key, direction in _TIE_BREAKS[prefer] if key in candidates]
    ranked = candidates.sort_values([k for k, _ in order], ascending=[d == "min" for _, d in order], kind="stable")
    return ranked.iloc[0]


def closest_trials(trials: pd.DataFrame, constraints: list[Constraint], excess: pd.DataFrame,
                   count: int = CLOSEST_COUNT) -> pd.DataFrame:
    """The ``count`` trials with the smallest total (range-scaled) violation."""
    total = excess.replace(np.inf, np.nan).sum(axis=1, min_count=1).fillna(np.inf)
    return trials.assign(**{VIOLATION: total}).sort_values(VIOLATION, kind="stable").head(count)


# --------------------------------------------------------------------------- explanations


def explain(pick: Pick, objectives: dict[str, str]) -> list[str]:
    """Lines saying what was chosen and why (or why nothing was)."""
    lines = [_constraints_line(pick)]
    if not pick.found:
        lines.append(f"None of the {pick.finished} finished trials satisfies every constraint. "
                     "Closest trials (smallest total violation, each scaled by its metric's range):")
        lines += [f"  {row[R.TRIAL_ID]}: {violated_text(row, pick.constraints)}" for _, row in pick.closest.iterrows()]
        return lines
    lines.append(f"{len(pick.feasible)} of {pick.finished} finished trials satisfy them; "
                 f"{len(pick.candidates)} of those are non-dominated.")
    lines.append(_preference_line(pick))
    lines.append(f"trial {pick.trial_id}: " + metrics_text(pick.trial, objectives, pick.constraints))
    lines.append("It is on the run's Pareto front." if pick.on_run_front else
                 "It is not on the run's Pareto front: a trial outside the constraints dominates it.")
    return lines


def _constraints_line(pick: Pick) -> str:
    if not pick.constraints:
        return "No constraints: every finished trial is feasible."
    return f"Constraints (from {pick.constraints_source}): " + ", ".join(c.describe() for c in pick.constraints)


def _preference_line(pick: Pick) -> str:
    if pick.prefer == "knee":
        return ("Preference 'knee': the feasible front's balanced compromise, closest to the ideal point "
                "with each objective scaled over that front.")
    metric, direction = _TIE_BREAKS[pick.prefer][0]
    best = "highest" if direction == "max" else "lowest"
    return f"Preference '{pick.prefer}': the {best} {label(metric)} of the feasible front."


def metrics_text(row: pd.Series, objectives: dict[str, str], constraints: list[Constraint]) -> str:
    keys = list(dict.fromkeys([*objectives, *(c.metric for c in constraints), M.SPEEDUP]))
    return ", ".join(f"{key} {format_value(key, row.get(key))}" for key in keys if key in row)


def violated_text(row: pd.Series, constraints: list[Constraint]) -> str:
    parts = []
    for constraint in constraints:
        value = row.get(constraint.metric)
        excess = constraint.excess(float(value) if value is not None else math.nan)
        mark = "ok" if excess == 0 else f"misses by {format_value(constraint.metric, excess)}"
        parts.append(f"{constraint.metric} {format_value(constraint.metric, value)} "
                     f"(needs {constraint.describe().split(' ', 1)[1]}: {mark})")
    return "; ".join(parts)
