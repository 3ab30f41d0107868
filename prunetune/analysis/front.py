"""The Pareto front of a run, its hypervolume and its knee.

Normalisation (hypervolume)
    Objectives live on very different scales (accuracy in [0, 1], latency in ms,
    emissions in kg), so each is first turned into a cost to minimise (maximised
    objectives are negated) and then mapped linearly onto [0, 1]: 0 is the best value any
    finished trial reached, 1 the worst. The bounds come from the finished trials of the
    run only (the teacher is a reference, not a trial) and are fixed for the whole run, so
    that the hypervolume after k trials is comparable for every k.

Reference point
    ``(1.1, ..., 1.1)`` in that normalised space: 10% beyond the worst value of each
    objective, so that the trials at the worst end of one objective still add volume.
    The hypervolume is therefore between 0 and ``1.1 ** m`` for m objectives; it is
    computed exactly by moocore.

Knee
    The front point closest (Euclidean distance) to the ideal point, after normalising
    each objective onto [0, 1] over the front itself (0 = the front's best value, 1 = its
    worst). It is the balanced compromise: no objective is given up much to favour
    another. Ties go to the trial that finished first.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from prunetune.analysis import runs as R
from prunetune.analysis.runs import RunData
from prunetune.errors import DataError
from prunetune.pareto import as_minimisation, nondominated_mask

#: Coordinate of the hypervolume reference point in every normalised objective.
REFERENCE_POINT = 1.1
ON_FRONT = "on_front"
KNEE = "knee"


@dataclass(frozen=True)
class Bounds:
    """Per-objective best and worst values, as costs (maximised objectives negated)."""

    best: np.ndarray
    worst: np.ndarray

    @classmethod
    def of(cls, costs: np.ndarray) -> "Bounds":
        if len(costs) == 0:
            raise DataError("no finished trial with every objective measured: there is no front")
        return cls(costs.min(axis=0), costs.max(axis=0))

    def normalise(self, costs: np.ndarray) -> np.ndarray:
        # An objective on which every trial scored the same carries no trade-off: map it to 0.
        span = np.where(self.worst > self.best, self.worst - self.best, 1.0)
        return (costs - self.best) / span


@dataclass(frozen=True)
class FrontAnalysis:
    """A run's finished trials with their front membership, the hypervolume and the knee."""

    objectives: dict[str, str]
    trials: pd.DataFrame
    hypervolume: float
    history: pd.DataFrame
    knee_id: str
    bounds: Bounds

    @property
    def front(self) -> pd.DataFrame:
        """The non-dominated trials, best first in the first objective."""
        return sort_best_first(self.trials[self.trials[ON_FRONT]], self.objectives)

    @property
    def max_hypervolume(self) -> float:
        return REFERENCE_POINT ** len(self.objectives)


def analyse(run: RunData) -> FrontAnalysis:
    """Front, hypervolume, hypervolume after each trial, and the knee of a run."""
    finished = run.finished.reset_index(drop=True)
    if finished.empty:
        raise DataError(_no_front_message(run))
    directions = list(run.objectives.values())
    values = objective_values(finished, run.objectives)
    bounds = Bounds.of(as_minimisation(values, directions))
    mask = nondominated_mask(values, directions)
    trials = finished.assign(**{ON_FRONT: mask})
    knee_row = knee_index(values[mask], directions)
    knee_id = str(trials[mask].iloc[knee_row][R.TRIAL_ID])
    trials[KNEE] = trials[R.TRIAL_ID] == knee_id
    return FrontAnalysis(
        objectives=dict(run.objectives),
        trials=trials,
        hypervolume=hypervolume(values, directions, bounds),
        history=hypervolume_history(values, directions, bounds),
        knee_id=knee_id,
        bounds=bounds,
    )


def _no_front_message(run: RunData) -> str:
    errors = run.errored[R.ERROR].dropna() if R.ERROR in run.errored else []
    first = f"; first error: {errors.iloc[0]}" if len(errors) else ""
    return (f"{run.run_dir}: no finished trial with every objective ({', '.join(run.objectives)}) measured, "
            f"out of {len(run.trials)} trial(s): there is no front{first}")


def objective_values(table: pd.DataFrame, objectives: dict[str, str]) -> np.ndarray:
    return table[list(objectives)].to_numpy(dtype=float)


def hypervolume(values: np.ndarray, directions: Sequence[str], bounds: Bounds) -> float:
    """Hypervolume of ``values`` in the normalised space, against :data:`REFERENCE_POINT`."""
    import moocore

    values = np.asarray(values, dtype=float)
    if len(values) == 0:
        return 0.0
    front = values[nondominated_mask(values, directions)]
    normalised = bounds.normalise(as_minimisation(front, directions))
    reference = np.full(normalised.shape[1], REFERENCE_POINT)
    return float(moocore.hypervolume(normalised, ref=reference))


def hypervolume_history(values: np.ndarray, directions: Sequence[str], bounds: Bounds) -> pd.DataFrame:
    """Hypervolume of the first k finished trials, for k = 1..n (rows in finishing order)."""
    volumes = [hypervolume(values[: k + 1], directions, bounds) for k in range(len(values))]
    return pd.DataFrame({"trials": np.arange(1, len(values) + 1), "hypervolume": volumes})


def knee_index(front_values: np.ndarray, directions: Sequence[str]) -> int:
    """Row of ``front_values`` closest to the ideal point, each objective scaled over the front."""
    costs = as_minimisation(front_values, directions)
    if len(costs) == 0:
        raise DataError("the front is empty: no knee")
    scaled = Bounds.of(costs).normalise(costs)
    return int(np.argmin(np.linalg.norm(scaled, axis=1)))


def sort_best_first(table: pd.DataFrame, objectives: dict[str, str]) -> pd.DataFrame:
    """Rows ordered best first by the first objective, then the next ones."""
    keys = list(objectives)
    ascending = [objectives[k] == "min" for k in keys]
    return table.sort_values(keys, ascending=ascending, kind="stable")
