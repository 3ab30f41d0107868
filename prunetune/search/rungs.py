"""Asynchronous successive halving over several objectives: the rung ladder.

Trials are ranked at *rungs*, the steps ``grace * eta^k`` below the trial's last step
(:func:`prunetune.config.rung_steps`). When a trial reports at (or past) a rung it has not
been ranked at, it is ranked against every trial recorded there before it, by
non-dominated sorting of their objective vectors, ties within a front broken by
hypervolume contribution; it goes on when fewer than ``ceil(n / eta)`` of the ``n`` trials
at the rung (itself included) rank strictly ahead of it, and stops otherwise. That is the
stopping variant of ASHA (Li et al. 2020) with the multi-objective ranking of MO-ASHA
(Schmucker et al. 2021): no trial waits for a rung to fill, so workers never idle.

A trial whose objectives at a rung are missing or not finite ranks behind every other.
With one objective the ranking is plain sorting (ASHA). The ladder is pure Python and
JSON-serialisable: the Ray Tune scheduler (:mod:`prunetune.search.scheduler`) and the
replay simulator (:mod:`prunetune.search.replay`) drive this same class.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np

from prunetune.pareto import as_minimisation

#: Contributions closer than this (on objectives scaled to [0, 1]) are ties.
TIE_TOLERANCE = 1e-12


@dataclass
class Decision:
    """What the ladder decided for one report: go on, or stop at ``rung``."""

    go_on: bool
    rung: int | None = None  # the rung the report was ranked at; None when it was at none


@dataclass
class RungLadder:
    """The rungs, what was recorded at each, and the decisions taken there."""

    rungs: Sequence[int]
    directions: Sequence[str]  # "max" | "min" per objective
    reduction_factor: int = 3
    #: rung step -> trial id -> {"values": [...], "go_on": bool}, in arrival order
    records: dict[int, dict[str, dict[str, Any]]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.rungs = sorted(int(step) for step in self.rungs)
        self.records = {int(step): dict(self.records.get(step, self.records.get(str(step), {})))
                        for step in self.rungs}

    def on_report(self, trial_id: str, step: int, values: Sequence[float | None], *,
                  ranked_as: Sequence[float | None] | None = None) -> Decision:
        """Rank a report at the highest rung at or below ``step`` that the trial was not ranked at.

        ``values`` are recorded at the rung, for the trials that come later to be ranked against;
        the decision ranks ``ranked_as`` instead where given (the trial's own figures with the
        benefit of their doubt, :func:`favourable_vector`). A trial ranked at a rung before (a
        resumed trial reporting that step again) gets the same decision as then.
        """
        rung = self._rung_for(step)
        if rung is None:
            return Decision(go_on=True)
        recorded = self.records[rung]
        if trial_id in recorded:
            return Decision(go_on=recorded[trial_id]["go_on"], rung=rung)
        vector = [_finite_or_nan(value) for value in values]
        candidate = vector if ranked_as is None else [_finite_or_nan(value) for value in ranked_as]
        others = [entry["values"] for entry in recorded.values()]
        go_on = ranks_in_top(candidate, others, self.directions, self.reduction_factor)
        recorded[trial_id] = {"values": vector, "go_on": go_on}
        return Decision(go_on=go_on, rung=rung)

    def _rung_for(self, step: int) -> int | None:
        below = [rung for rung in self.rungs if rung <= step]
        return below[-1] if below else None

    def stopped(self) -> dict[str, int]:
        """Trial id -> the rung it was stopped at."""
        return {trial: rung for rung in self.rungs for trial, entry in self.records[rung].items()
                if not entry["go_on"]}

    # ------------------------------------------------------------------ JSON

    def to_json(self) -> str:
        return json.dumps({"rungs": list(self.rungs), "directions": list(self.directions),
                           "reduction_factor": self.reduction_factor,
                           "records": {str(rung): records for rung, records in self.records.items()}},
                          allow_nan=True)

    @classmethod
    def from_json(cls, text: str) -> "RungLadder":
        state = json.loads(text)
        return cls(rungs=state["rungs"], directions=state["directions"],
                   reduction_factor=int(state["reduction_factor"]),
                   records={int(rung): records for rung, records in state["records"].items()})


# --------------------------------------------------------------------------- ranking


def keep_count(n: int, reduction_factor: int) -> int:
    """How many of ``n`` trials at a rung go on: the top ``ceil(n / eta)``, at least one."""
    return max(1, math.ceil(n / reduction_factor))


def ranks_in_top(candidate: Sequence[float], others: Sequence[Sequence[float]], directions: Sequence[str],
                 reduction_factor: int) -> bool:
    """Whether ``candidate`` is among the top ``ceil(n / eta)`` of itself and ``others`` (ties go on)."""
    vectors = np.array([*others, candidate], dtype=float).reshape(len(others) + 1, len(directions))
    order = rank_keys(vectors, directions)
    mine = order[-1]
    ahead = sum(1 for key in order[:-1] if _strictly_ahead(key, mine))
    return ahead < keep_count(len(vectors), reduction_factor)


def rank_keys(vectors: np.ndarray, directions: Sequence[str]) -> list[tuple[float, float]]:
    """``(front, -contribution)`` per row, smaller is better: the non-dominated front a row is in
    (0 is the best; rows with a missing value after every front), and its hypervolume
    contribution within that front on objectives scaled to [0, 1]."""
    import moocore

    minimised = as_minimisation(vectors, directions)
    finite = np.isfinite(minimised).all(axis=1)
    keys = [(math.inf, 0.0)] * len(minimised)
    if not finite.any():
        return keys
    scaled = _scaled(minimised[finite])
    fronts = np.asarray(moocore.pareto_rank(scaled))
    contributions = np.zeros(len(scaled))
    if scaled.shape[1] > 1:  # one objective: a front holds equal values only
        for front in np.unique(fronts):
            members = fronts == front
            contributions[members] = moocore.hv_contributions(scaled[members], ref=1.1)
    for row, front, contribution in zip(np.flatnonzero(finite), fronts, contributions):
        keys[row] = (float(front), -float(contribution))
    return keys


def _scaled(values: np.ndarray) -> np.ndarray:
    low, high = values.min(axis=0), values.max(axis=0)
    span = np.where(high > low, high - low, 1.0)
    return (values - low) / span


def _strictly_ahead(key: tuple[float, float], other: tuple[float, float]) -> bool:
    if key[0] != other[0]:
        return key[0] < other[0]
    return key[1] < other[1] - TIE_TOLERANCE


def _finite_or_nan(value: Any) -> float:
    try:
        value = float(value)
    except (TypeError, ValueError):
        return math.nan
    return value if math.isfinite(value) else math.nan


def objective_vector(result: Mapping[str, Any], objectives: Sequence[str]) -> list[float]:
    """A report's values of ``objectives`` (NaN where one is missing)."""
    return [_finite_or_nan(result.get(key)) for key in objectives]


def favourable_vector(result: Mapping[str, Any], objectives: Sequence[str], directions: Sequence[str]) -> list[float]:
    """A report's values of ``objectives``, each at the end of its 95% interval that favours the trial
    where the report carries one (``<key>_ci_high`` for a metric to maximise, ``_ci_low`` for one to
    minimise), else its estimate: a figure measured on a finite evaluation split, given the benefit
    of its doubt."""
    from prunetune.metrics import interval_keys

    values = []
    for key, direction in zip(objectives, directions):
        low, high = interval_keys(key)
        bound = result.get(high if direction == "max" else low)
        values.append(_finite_or_nan(bound if bound is not None else result.get(key)))
    return values


@dataclass(frozen=True)
class RungObjectives:
    """What a rung ranks a report on: ``keys`` in their ``directions``; with ``benefit_of_doubt``
    (``search.scheduler: moasha-interval``), the reporting trial is ranked with its figures at
    the favourable ends of their intervals, against the others' estimates."""

    keys: tuple[str, ...]
    directions: tuple[str, ...]
    benefit_of_doubt: bool = False

    def recorded(self, result: Mapping[str, Any]) -> list[float]:
        return objective_vector(result, self.keys)

    def ranked_as(self, result: Mapping[str, Any]) -> list[float] | None:
        return favourable_vector(result, self.keys, self.directions) if self.benefit_of_doubt else None
