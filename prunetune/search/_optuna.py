"""Optuna under Ray Tune: samplers by name, constraints, failures told as infeasible.

Ray's ``OptunaSearch`` tells Optuna a failed trial as FAIL (or PRUNED when the final
result lacks an objective), and Optuna's samplers skip such trials: a region that fails
(fp16 overflow, out of memory, NaN loss) would keep being sampled. Here every finished
trial is told as COMPLETE with named constraints set on it first (Optuna 5's
``Trial.set_constraint``, which replaces the deprecated ``constraints_func``): ``failed``
says whether it failed, the others are the user's limits (``max_latency_ms``, ...). The
constrained samplers (NSGA-II, TPE, GP) read them from the trial, prefer feasible trials
and steer away from failing regions; the random sampler ignores them. They are set
before ``tell`` because a sampler's ``after_trial`` sees the trial as it was then.
"""

from __future__ import annotations

import logging
import math
import pickle
from typing import Any, Mapping, Sequence

import optuna
from optuna.samplers import BaseSampler, GPSampler, NSGAIISampler, RandomSampler, TPESampler
from optuna.trial import TrialState
from ray.tune.search.optuna import OptunaSearch

from prunetune import metrics as M

logger = logging.getLogger(__name__)

FAILED = "failed"
DUPLICATE_OF = "duplicate_of"
#: Draws of an already-measured configuration told from its twin before the sampler must give a new one.
MAX_REDRAWS = 8
TUNE_TRIAL_ATTR = "tune_trial_id"

#: Constraint name -> the metric it limits.
CONSTRAINT_METRICS: dict[str, str] = {
    "max_accuracy_drop": M.ACCURACY_DROP,
    "max_latency_ms": M.LATENCY_MS,
    "max_emissions_kg": M.EMISSIONS_KG,
}


# --------------------------------------------------------------------------- samplers


def default_population_size(num_trials: int) -> int:
    """NSGA-II's generation: a third of the budget, between 4 and Optuna's default of 50."""
    return max(4, min(50, num_trials // 3))


def default_startup_trials(num_trials: int) -> int:
    """Random trials before TPE/GP model the space: a quarter of the budget, 4 to 10."""
    return max(4, min(10, num_trials // 4))


def make_sampler(
    name: str,
    *,
    seed: int | None,
    num_trials: int,
    population_size: int | None = None,
    n_startup_trials: int | None = None,
) -> BaseSampler:
    """The Optuna sampler called ``name`` (nsga2, tpe, gp, random), seeded."""
    startup = n_startup_trials or default_startup_trials(num_trials)
    if name == "nsga2":
        return NSGAIISampler(population_size=population_size or default_population_size(num_trials), seed=seed)
    if name == "tpe":
        return TPESampler(n_startup_trials=startup, seed=seed)
    if name == "gp":
        return GPSampler(n_startup_trials=startup, seed=seed)
    if name == "random":
        return RandomSampler(seed=seed)
    raise ValueError(f"search.sampler = {name!r}: expected nsga2, tpe, gp or random")


def make_storage(url: str) -> optuna.storages.RDBStorage:
    """An RDB storage (SQLite file, PostgreSQL, ...) that optuna-dashboard can open."""
    return optuna.storages.RDBStorage(url, engine_kwargs=_engine_kwargs(url))


def _engine_kwargs(url: str) -> dict[str, Any]:
    # SQLite: wait for a lock instead of failing while the dashboard reads the file.
    return {"connect_args": {"timeout": 30}} if url.startswith("sqlite") else {"pool_pre_ping": True}


# --------------------------------------------------------------------------- constraints


def constraint_values(
    result: Mapping[str, Any] | None, limits: Mapping[str, float], *, failed: bool
) -> dict[str, float]:
    """``{"failed": ±1, "max_latency_ms": latency - limit, ...}``: every value <= 0 means feasible.

    A failed trial violates every limit by the limit's own size, so that samplers modelling
    each constraint (GP) see it as clearly infeasible without a made-up metric value.
    """
    values = {FAILED: 1.0 if failed else -1.0}
    for name, limit in limits.items():
        value = None if failed or result is None else result.get(CONSTRAINT_METRICS[name])
        values[name] = float(value) - limit if _finite(value) else max(abs(limit), 1e-9)
    return values


def _finite(value: Any) -> bool:
    try:
        return math.isfinite(float(value))
    except (TypeError, ValueError):
        return False


def objective_values(result: Mapping[str, Any] | None, objectives: Sequence[str]) -> list[float] | None:
    """The objectives of a final result, or None when one is missing or not finite."""
    if not result:
        return None
    values = [result.get(key) for key in objectives]
    if any(value is None or not _finite(value) for value in values):
        return None
    return [float(value) for value in values]


# --------------------------------------------------------------------------- the searcher


class ParetoOptunaSearch(OptunaSearch):
    """``OptunaSearch`` over several objectives that tells failures and limits as constraints."""

    def __init__(
        self,
        space: Mapping[str, Any],
        *,
        objectives: Mapping[str, str],
        sampler: BaseSampler,
        storage_url: str,
        study_name: str,
        limits: Mapping[str, float] | None = None,
        points_to_evaluate: list[dict[str, Any]] | None = None,
        fallback_values: Mapping[str, float] | None = None,
    ):
        self._limits = dict(limits or {})
        self._fallback_values = dict(fallback_values or {})
        self._storage_url = storage_url
        super().__init__(
            space=dict(space),
            metric=list(objectives),
            mode=list(objectives.values()),
            sampler=sampler,
            study_name=study_name,
            storage=make_storage(storage_url),
            points_to_evaluate=points_to_evaluate,
        )

    @property
    def study(self) -> optuna.Study:
        self._ensure_study()
        return self._ot_study

    def suggest(self, trial_id: str) -> dict | None:
        self._ensure_study()
        params = super().suggest(trial_id)
        for _ in range(MAX_REDRAWS):
            twin = self._measured_twin(params)
            if twin is None:
                break
            self._record_twin(self._ot_trials.pop(trial_id), twin)
            params = super().suggest(trial_id)
        # The dashboard then links each Optuna trial to its Tune trial and run directory.
        self._ot_trials[trial_id].set_user_attr(TUNE_TRIAL_ATTR, trial_id)
        return params

    def _measured_twin(self, params: Mapping[str, Any]) -> optuna.trial.FrozenTrial | None:
        """A finished trial with exactly these parameters (NSGA-II breeds clones of its parents)."""
        for trial in self._ot_study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
            if trial.params == params and DUPLICATE_OF not in trial.user_attrs:
                return trial
        return None

    def _record_twin(self, ot_trial: optuna.Trial, twin: optuna.trial.FrozenTrial) -> None:
        """Tell a clone its twin's outcome instead of running it again, so that the sampler
        draws anew; the budget of Tune trials goes to configurations not measured yet."""
        ot_trial.set_user_attr(DUPLICATE_OF, twin.number)
        ot_trial.set_user_attr(FAILED, twin.user_attrs.get(FAILED, False))
        for name, value in twin.constraints.items():
            ot_trial.set_constraint(name, value)
        self._ot_study.tell(ot_trial, twin.values, state=TrialState.COMPLETE, skip_if_finished=True)

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        self._ensure_study()
        if trial_id in self._completed_trials or trial_id not in self._ot_trials:
            return
        ot_trial = self._ot_trials[trial_id]
        values = None if error else objective_values(result, self.metric)
        failed = values is None
        if failed:
            values = self._stand_in_values()
        ot_trial.set_user_attr(FAILED, failed)
        for name, value in constraint_values(result, self._limits, failed=failed).items():
            ot_trial.set_constraint(name, value)
        self._ot_study.tell(ot_trial, values, state=TrialState.COMPLETE, skip_if_finished=True)
        self._completed_trials.add(trial_id)

    def _stand_in_values(self) -> list[float]:
        """Values for a failed trial: the worst seen so far per objective (its constraints carry the signal).

        Optuna needs finite values for a COMPLETE trial; the worst observed keeps the point
        inside the range the sampler models. Before any success, the fallback (from the
        teacher's baseline) or a neutral 0 stands in.
        """
        succeeded = [
            t.values for t in self._ot_study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
            if not t.user_attrs.get(FAILED, False) and t.values
        ]
        stand_in = []
        for index, (key, mode) in enumerate(zip(self.metric, self.mode)):
            column = [values[index] for values in succeeded]
            if column:
                stand_in.append(min(column) if mode == "max" else max(column))
            else:
                stand_in.append(float(self._fallback_values.get(key, 0.0)))
        return stand_in

    # ------------------------------------------------------------------ saving and resuming
    #
    # Tune pickles the searcher twice: with the Tuner (tuner.pkl, before the search starts)
    # and in each experiment snapshot (``save``). Ray's OptunaSearch pickles its live study,
    # whose storage reconnects to the database it was created with as soon as it is
    # unpickled: a moved run directory would then fail, or silently start an empty study at
    # the old path. Here the study travels as (storage URL, study name, trial ids) and is
    # reconnected on first use, to the storage of the run directory being resumed.

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        pending = state.pop("_trial_numbers", {})  # unpickled and not reconnected yet
        state["_trial_numbers"] = {**pending, **{tid: t._trial_id for tid, t in self._ot_trials.items()}}
        state.update(_ot_study=None, _storage=None, _ot_trials={})
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)

    def save(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "wb") as handle:
            pickle.dump(self.__getstate__(), handle)

    def restore(self, checkpoint_path: str) -> None:
        """Restore the snapshot, reconnect to this run's storage, close trials a killed driver left open."""
        storage_url = self._storage_url  # set by ``reopen_at`` for the run directory being resumed
        with open(checkpoint_path, "rb") as handle:
            self.__setstate__(pickle.load(handle))
        self._storage_url = storage_url or self._storage_url
        self._ot_study = None
        self._ensure_study()
        self._fail_orphans()

    def reopen_at(self, storage_url: str) -> None:
        """Point a searcher that is about to be restored at the current run directory's storage."""
        self._storage_url = storage_url

    def _ensure_study(self) -> None:
        if self._ot_study is not None:
            return
        self._storage = make_storage(self._storage_url)
        self._ot_study = optuna.load_study(study_name=self._study_name, storage=self._storage, sampler=self._sampler)
        numbers = self.__dict__.pop("_trial_numbers", {})
        self._ot_trials = {tid: optuna.Trial(self._ot_study, trial_id) for tid, trial_id in numbers.items()}

    def _fail_orphans(self) -> None:
        """Optuna trials asked for after the last experiment snapshot belong to no Tune trial."""
        known = {t._trial_id for t in self._ot_trials.values()}
        for trial in self._ot_study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            if trial._trial_id not in known:
                self._ot_study._storage.set_trial_user_attr(trial._trial_id, FAILED, True)
                self._ot_study.tell(trial.number, state=TrialState.FAIL, skip_if_finished=True)
                logger.info("Optuna trial %d had no Tune trial after the restart; marked failed", trial.number)
