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

:class:`ParetoOptunaSearch` is a plain Tune ``Searcher`` that drives an ``optuna.Study``
through ask and tell, so that a new Ray release cannot change it from under us. Its state
is the study: a resumed search hands out the configurations of the trials it continues
(:meth:`ParetoOptunaSearch.continue_trials`), then asks the study for new ones, and the
sampler draws what an uninterrupted search would have drawn (:class:`TrialSeededSampler`).
"""

from __future__ import annotations

import functools
import logging
import math
import secrets
import warnings
from collections import deque
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

import optuna
from optuna.samplers import (
    BaseSampler,
    GPSampler,
    NSGAIISampler,
    RandomSampler,
    TPESampler,
)
from optuna.trial import FrozenTrial, TrialState
from ray.tune.search import Searcher

from prunetune import metrics as M
from prunetune.config import redact_url, storage_failure
from prunetune.errors import ConfigError
from prunetune.names import RESUMED_FROM_TRIAL_ATTR
from prunetune.search.budget import TimeBudget

#: Tune's key of a trial's running time in its results.
TIME_TOTAL = "time_total_s"

logger = logging.getLogger(__name__)

FAILED = "failed"
DUPLICATE_OF = "duplicate_of"
#: Draws of an already-measured configuration told from its twin before the sampler must give a new one.
MAX_REDRAWS = 8
TUNE_TRIAL_ATTR = "tune_trial_id"
#: Trial user attr: the step a scheduler stopped the trial at.
STOPPED_AT_ATTR = M.STOPPED_AT_STEP
#: How a trial stopped early is told: its rung values as a result, or those values marked infeasible.
STOPPED_AS = ("values", "infeasible")
#: What the live search tells (chosen on the replay figures: bench/replay.py).
STOPPED_TOLD_AS = "values"
#: Study user attr: the run directory whose search owns the study.
RUN_DIR_ATTR = "run_dir"
#: Study user attr: the seed drawn for a search whose search.seed is null (a resume draws on with it).
SAMPLER_SEED_ATTR = "sampler_seed"


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
    """The Optuna sampler called ``name`` (nsga2, tpe, gp, random), seeded per trial (see
    :class:`TrialSeededSampler`)."""
    if name not in SAMPLERS:
        raise ConfigError(f"search.sampler = {name!r}: expected {', '.join(SAMPLERS)}")
    make = functools.partial(_sampler, name, num_trials=num_trials, population_size=population_size,
                             n_startup_trials=n_startup_trials)
    return TrialSeededSampler(make, seed=seed)


SAMPLERS = ("nsga2", "tpe", "gp", "random")


def _sampler(name: str, seed: int | None, *, num_trials: int, population_size: int | None,
             n_startup_trials: int | None) -> BaseSampler:
    startup = n_startup_trials or default_startup_trials(num_trials)
    if name == "nsga2":
        return NSGAIISampler(population_size=population_size or default_population_size(num_trials), seed=seed)
    if name == "tpe":
        return TPESampler(n_startup_trials=startup, seed=seed)
    if name == "gp":
        return GPSampler(n_startup_trials=startup, seed=seed)
    return RandomSampler(seed=seed)


def trial_seed(seed: int, number: int) -> int:
    """The seed of trial ``number``'s draw: a hash of the search's seed and the number."""
    import numpy as np

    return int(np.random.SeedSequence([seed, number]).generate_state(1)[0])


class TrialSeededSampler(BaseSampler):
    """Draws each trial with a fresh sampler seeded from (search seed, trial number).

    A sampler seeded once carries its random state from draw to draw, and a restarted driver
    cannot rebuild it. The samplers keep everything else in the study (NSGA-II its
    generations and parents, TPE and GP nothing but their random state), so a sampler made
    anew for each trial with a seed derived from its number draws, for a given study, what a
    long-lived one would: a resumed search with deterministic trials draws the configurations
    an uninterrupted one draws. With no seed, one is drawn once and kept in the study.
    """

    def __init__(self, make: Callable[[int | None], BaseSampler], *, seed: int | None):
        self._make = make
        self._seed = seed
        self._current = make(seed)

    @property
    def sampler(self) -> BaseSampler:
        """The sampler of the trial drawn last."""
        return self._current

    def before_trial(self, study: optuna.Study, trial: FrozenTrial) -> None:
        self._current = self._make(trial_seed(self._search_seed(study), trial.number))
        self._current.before_trial(study, trial)

    def _search_seed(self, study: optuna.Study) -> int:
        if self._seed is not None:
            return self._seed
        seed = study.user_attrs.get(SAMPLER_SEED_ATTR)
        if seed is None:
            seed = secrets.randbits(32)
            study.set_user_attr(SAMPLER_SEED_ATTR, seed)
        return int(seed)

    def infer_relative_search_space(self, study: optuna.Study, trial: FrozenTrial) -> dict[str, Any]:
        return self._current.infer_relative_search_space(study, trial)

    def sample_relative(self, study: optuna.Study, trial: FrozenTrial, search_space: dict[str, Any]) -> dict[str, Any]:
        return self._current.sample_relative(study, trial, search_space)

    def sample_independent(self, study: optuna.Study, trial: FrozenTrial, param_name: str,
                           param_distribution: Any) -> Any:
        return self._current.sample_independent(study, trial, param_name, param_distribution)

    def after_trial(self, study: optuna.Study, trial: FrozenTrial, state: TrialState,
                    values: Sequence[float] | None) -> None:
        self._current.after_trial(study, trial, state, values)

    def reseed_rng(self) -> None:
        """Nothing to do: every draw is seeded by its trial."""

    # Tune pickles the searcher, sampler included; NSGA-II holds a thread lock, which pickle
    # refuses. The current sampler is made again before the next draw.
    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_current": None}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._current = self._make(self._seed)


# --------------------------------------------------------------------------- storage


def make_storage(url: str) -> optuna.storages.RDBStorage:
    """An RDB storage (SQLite file, PostgreSQL, ...) that optuna-dashboard can open.

    A URL that cannot be opened (malformed, its driver missing, its server unreachable) is a
    ConfigError naming the key and the URL, its password masked.
    """
    from sqlalchemy.exc import SQLAlchemyError

    try:
        return optuna.storages.RDBStorage(url, engine_kwargs=_engine_kwargs(url))
    except (ImportError, ValueError, SQLAlchemyError) as exc:
        raise storage_failure(url, exc) from None


def _engine_kwargs(url: str) -> dict[str, Any]:
    # SQLite: wait for a lock instead of failing while the dashboard reads the file.
    return {"connect_args": {"timeout": 30}} if url.startswith("sqlite") else {"pool_pre_ping": True}


# --------------------------------------------------------------------------- constraints


def constraint_values(
    result: Mapping[str, Any] | None, limits: Mapping[str, float], *, failed: bool,
    columns: Mapping[str, str] | None = None,
) -> dict[str, float]:
    """``{"failed": ±1, "max_latency_ms": latency - limit, ...}``: every value <= 0 means feasible.

    ``columns`` names the result key each limit bounds (default: its metric; see
    ``ConstraintsConfig.columns``). A failed trial violates every limit by the limit's own
    size, so that samplers modelling each constraint (GP) see it as clearly infeasible
    without a made-up metric value.
    """
    values = {FAILED: 1.0 if failed else -1.0}
    for name, limit in limits.items():
        column = (columns or {}).get(name) or M.CONSTRAINT_METRICS[name]
        value = None if failed or result is None else result.get(column)
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


class ParetoOptunaSearch(Searcher):
    """A Tune searcher over several objectives that tells failures and limits as constraints.

    A trial a scheduler stopped early is told as COMPLETE with the objectives of its last
    rung and a ``stopped_at_step`` user attribute; with ``stopped_as="infeasible"`` its
    ``failed`` constraint is set too, so that constrained samplers keep away from it.

    The study lives in ``storage_url`` as ``study_name`` and belongs to the search of
    ``run_dir``: another search meeting it in a shared database is refused, unless it is
    the study of this search's run directory before it moved (``moved_from``). The study
    is the searcher's whole state: Tune's saving of searchers is declined, and a resumed
    search builds a new searcher over the same study. The space, objectives and directions
    come with the constructor: Tune's ``set_search_properties`` is declined, as the base
    class does.
    """

    def __init__(
        self,
        space: Mapping[str, Any],
        *,
        objectives: Mapping[str, str],
        sampler: BaseSampler,
        storage_url: str,
        study_name: str,
        run_dir: str,
        limits: Mapping[str, float] | None = None,
        limit_columns: Mapping[str, str] | None = None,
        points_to_evaluate: list[dict[str, Any]] | None = None,
        fallback_values: Mapping[str, float] | None = None,
        stopped_as: str = "values",
        moved_from: str | None = None,
        budget: TimeBudget | None = None,
    ):
        bad = {key: mode for key, mode in objectives.items() if mode not in ("min", "max")}
        if not objectives or bad:
            raise ConfigError(f"search.objectives = {dict(objectives)!r}: each objective needs 'min' or 'max'")
        if stopped_as not in STOPPED_AS:
            raise ConfigError(f"stopped_as = {stopped_as!r}: expected one of {', '.join(STOPPED_AS)}")
        super().__init__(metric=list(objectives), mode=list(objectives.values()))
        self._stopped_as = stopped_as
        self._space = dict(space)
        self._sampler = sampler
        self._storage_url = storage_url
        self._study_name = study_name
        self._run_dir = str(run_dir)
        self._owner_dir = str(moved_from) if moved_from else self._run_dir  # what RUN_DIR_ATTR may say
        self._limits = dict(limits or {})
        self._limit_columns = dict(limit_columns or {})
        self._points = list(points_to_evaluate or [])
        self._fallback_values = dict(fallback_values or {})
        self._numbers: dict[str, int] = {}  # Tune trial id -> Optuna trial number
        self._completed: set[str] = set()
        self._continued: deque[Continued] = deque()  # handed out before any new trial is asked
        self.budget = budget  # search.time_budget: no trial starts that the time left cannot hold
        self._disconnect()
        self._connect()  # a study owned by another search is refused before Tune starts

    # ------------------------------------------------------------------ Tune's interface

    @property
    def study(self) -> optuna.Study:
        """The Optuna study, connected on first use."""
        return self._connect()

    def continue_trials(self, trials: Sequence["Continued"]) -> None:
        """Hand out these trials' configurations first (a resume runs them on), then new ones."""
        self._continued.extend(trials)

    def suggest(self, trial_id: str) -> dict | None:
        if not self._budget_allows_a_trial():
            return Searcher.FINISHED
        study = self._connect()
        if self._continued:
            continued = self._continued.popleft()
            self._numbers[trial_id] = continued.number
            return dict(continued.config)
        trial = study.ask(fixed_distributions=self._space)
        for _ in range(MAX_REDRAWS):
            twin = self._twin(trial)
            if twin is None:
                break
            self._record_twin(trial, twin)
            trial = study.ask(fixed_distributions=self._space)
        # The dashboard then links each Optuna trial to its Tune trial and run directory.
        trial.set_user_attr(TUNE_TRIAL_ATTR, trial_id)
        self._numbers[trial_id] = trial.number
        self._live[trial_id] = trial
        return dict(trial.params)

    def _budget_allows_a_trial(self) -> bool:
        """Without a budget, always; a trial a resume runs on, while any time is left; a new one,
        while at least a typical trial's time is left."""
        if self.budget is None:
            return True
        self.budget.save()
        return self.budget.left() > 0 if self._continued else self.budget.starts_another()

    def _budget_records(self, result: dict | None, error: bool) -> None:
        """A trial that ran to its end tells the budget how long a trial takes."""
        if self.budget is None:
            return
        ran_to_end = not error and result is not None and not result.get(M.FAILED) and M.stopped_at(result) is None
        self.budget.trial_ended(result.get(TIME_TOTAL) if ran_to_end else None)

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        # Intermediate reports hold no latency or emissions: nothing a sampler could use.
        return None

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        if trial_id in self._completed or trial_id not in self._numbers:
            return
        self._budget_records(result, error)
        frozen = self._frozen(self._numbers[trial_id])
        if frozen.state.is_finished():
            if _lost_to_the_infrastructure(frozen):
                if error or result is None:  # lost again, or stopped before it ran: a later resume may finish it
                    self._live.pop(trial_id, None)
                    return
                # Tune gave up on it, and a resume ran it to its end: the outcome joins the study.
                self._record_resumed(trial_id, frozen, result)
            # Otherwise told before the driver died, and run again by the resume for its row: the
            # study already holds the outcome, and Optuna refuses a second one.
            self._finish(trial_id)
            return
        if error:
            # Tune gave up on the infrastructure (a node or worker died, retries spent): nothing is
            # known about the configuration, so it is not told as infeasible; samplers skip FAIL.
            # Not finished here: ``--resume`` runs errored trials again.
            self._connect().tell(self._trial(trial_id), state=TrialState.FAIL, skip_if_finished=True)
            self._live.pop(trial_id, None)
            return
        told, user_attrs, constraints = self._outcome(result)
        trial = self._trial(trial_id)
        for key, value in user_attrs.items():
            trial.set_user_attr(key, value)
        for name, value in constraints.items():
            trial.set_constraint(name, value)
        self._connect().tell(trial, told, state=TrialState.COMPLETE, skip_if_finished=True)
        self._finish(trial_id)

    def _outcome(self, result: dict | None) -> tuple[list[float], dict[str, Any], dict[str, float]]:
        """What a trial's final result tells the study: values, user attrs and constraints."""
        values = objective_values(result, self.metric)
        failed = values is None
        user_attrs: dict[str, Any] = {FAILED: failed}
        stopped_at = M.stopped_at(result)
        if stopped_at is not None:
            user_attrs[STOPPED_AT_ATTR] = stopped_at
        infeasible = failed or (stopped_at is not None and self._stopped_as == "infeasible")
        constraints = constraint_values(result, self._limits, failed=infeasible, columns=self._limit_columns)
        return (self._stand_in_values() if failed else values), user_attrs, constraints

    def _record_resumed(self, trial_id: str, frozen: FrozenTrial, result: dict | None) -> None:
        """Add the outcome of a trial told FAIL by an infrastructure failure as a new COMPLETE trial.

        Optuna never changes a finished trial, so the outcome becomes a copy of its parameters
        that points back at it; the Tune trial maps to the copy from now on.
        """
        study = self._connect()
        earlier = _copy_of(study, frozen.number)
        if earlier is not None:  # made before the driver died
            self._numbers[trial_id] = earlier
            return
        told, user_attrs, constraints = self._outcome(result)
        copy = optuna.trial.create_trial(
            params=frozen.params, distributions=frozen.distributions, values=told, constraints=constraints,
            user_attrs={**frozen.user_attrs, **user_attrs, RESUMED_FROM_TRIAL_ATTR: frozen.number})
        copy.datetime_start = frozen.datetime_start  # the trial's own start, not the copy's
        storage_id = self._storage.create_new_trial(self._study_id, template_trial=copy)
        self._numbers[trial_id] = self._storage.get_trial_number_from_id(storage_id)

    def _finish(self, trial_id: str) -> None:
        self._completed.add(trial_id)
        self._live.pop(trial_id, None)

    # ------------------------------------------------------------------ clones and failures

    def _twin(self, trial: optuna.Trial) -> FrozenTrial | None:
        """Another trial with exactly these parameters, measured or being measured (NSGA-II breeds
        clones of its parents, also while they still run)."""
        for other in self._connect().get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.RUNNING)):
            if other.number != trial.number and other.params == trial.params and DUPLICATE_OF not in other.user_attrs:
                return other
        return None

    def _record_twin(self, trial: optuna.Trial, twin: FrozenTrial) -> None:
        """Tell a clone its twin's outcome instead of running it again, so that the sampler draws
        anew; the budget of Tune trials goes to configurations not measured yet. A twin still
        running has no outcome yet: the clone is told as failed, which samplers leave out."""
        trial.set_user_attr(DUPLICATE_OF, twin.number)
        if twin.state == TrialState.RUNNING:
            self._connect().tell(trial, state=TrialState.FAIL, skip_if_finished=True)
            return
        trial.set_user_attr(FAILED, twin.user_attrs.get(FAILED, False))
        for name, value in twin.constraints.items():
            trial.set_constraint(name, value)
        self._connect().tell(trial, twin.values, state=TrialState.COMPLETE, skip_if_finished=True)

    def _stand_in_values(self) -> list[float]:
        """Values for a failed trial: the worst seen so far per objective (its constraints carry the signal).

        Optuna needs finite values for a COMPLETE trial; the worst observed keeps the point
        inside the range the sampler models. Before any success, the fallback (from the
        teacher's baseline) or a neutral 0 stands in.
        """
        succeeded = [
            t.values for t in self._connect().get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
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

    # ------------------------------------------------------------------ Optuna trials by number

    def _trial_id(self, number: int) -> int:
        """Storage's id of trial ``number``, through the storage's public lookup."""
        return self._storage.get_trial_id_from_study_id_trial_number(self._study_id, number)

    def _frozen(self, number: int) -> FrozenTrial:
        self._connect()  # sets the storage
        return self._storage.get_trial(self._trial_id(number))

    def _trial(self, trial_id: str) -> optuna.Trial:
        """The live Optuna trial of a Tune trial, also one asked for by a driver before a restart.

        Constraints can only be set through a ``Trial`` object, and Optuna's documented
        constructor is the only way back to one from a stored trial.
        """
        trial = self._live.get(trial_id)
        if trial is None:
            study = self._connect()
            trial = optuna.trial.Trial(study, self._trial_id(self._numbers[trial_id]))
            self._live[trial_id] = trial
        return trial

    # ------------------------------------------------------------------ the study

    def _connect(self) -> optuna.Study:
        """Open (or create) the study."""
        if self._study is not None:
            return self._study
        storage = make_storage(self._storage_url)
        directions = ["maximize" if mode == "max" else "minimize" for mode in self.mode]
        study = optuna.create_study(storage=storage, sampler=self._sampler, pruner=optuna.pruners.NopPruner(),
                                    study_name=self._study_name, directions=directions, load_if_exists=True)
        self._storage, self._study_id = storage, storage.get_study_id_from_name(self._study_name)
        self._claim(study)
        self._study = study
        return study

    def _claim(self, study: optuna.Study) -> None:
        """Make ``study`` this search's, or refuse one that belongs to another run directory.

        A new study is named, marked with the run directory and given the starting points;
        a study this search already owns is loaded as it is (its starting points were
        enqueued once). A search resumed from a moved run directory moves its mark along.
        """
        owner = study.user_attrs.get(RUN_DIR_ATTR)
        if owner is None and not study.trials:
            self._start(study)
        elif owner in (self._owner_dir, self._run_dir):
            if owner != self._run_dir:
                study.set_user_attr(RUN_DIR_ATTR, self._run_dir)
        else:
            raise ConfigError(self._ownership_problem(owner))
        self._owner_dir = self._run_dir

    def _start(self, study: optuna.Study) -> None:
        study.set_user_attr(RUN_DIR_ATTR, self._run_dir)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            # optuna-dashboard then shows "accuracy", "latency_ms" instead of "0", "1".
            study.set_metric_names(list(self.metric))
        for point in self._points:
            study.enqueue_trial(point)

    def _ownership_problem(self, owner: str | None) -> str:
        return ownership_problem(self._storage_url, self._study_name, self._run_dir, owner)

    def _disconnect(self) -> None:
        self._study: optuna.Study | None = None
        self._storage: optuna.storages.RDBStorage | None = None
        self._study_id: int | None = None
        self._live: dict[str, optuna.Trial] = {}

    # ------------------------------------------------------------------ pickling and saving
    #
    # Tune pickles the searcher with its experiment and, through Ray Client, ships
    # it to the cluster. Neither copy carries the live study, nor a password: the study is
    # reconnected on first use.

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state.update(_study=None, _storage=None, _study_id=None, _live={}, _storage_url=redact_url(self._storage_url))
        return state

    def save_to_dir(self, checkpoint_dir: str, session_str: str = "default") -> None:
        """Nothing: a resume reads the study, never a saved searcher."""


@dataclass(frozen=True)
class Continued:
    """A trial a resume runs on: its Optuna trial, and the configuration Tune hands the trainable."""

    number: int
    config: Mapping[str, Any]


def _lost_to_the_infrastructure(trial: FrozenTrial) -> bool:
    """Told FAIL when Tune gave up on its worker or node (not a clone, not an orphan)."""
    return trial.state == TrialState.FAIL and FAILED not in trial.user_attrs and DUPLICATE_OF not in trial.user_attrs


def _copy_of(study: optuna.Study, number: int) -> int | None:
    """The number of the COMPLETE copy already made of trial ``number``, if any."""
    for trial in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        if trial.user_attrs.get(RESUMED_FROM_TRIAL_ATTR) == number:
            return trial.number
    return None


def _fail_orphan(study: optuna.Study, storage: optuna.storages.BaseStorage, number: int) -> None:
    study_id = storage.get_study_id_from_name(study.study_name)
    storage.set_trial_user_attr(storage.get_trial_id_from_study_id_trial_number(study_id, number), FAILED, True)
    study.tell(number, state=TrialState.FAIL, skip_if_finished=True)
    logger.info("Optuna trial %d belongs to no Tune trial of the search; marked failed", number)


def fail_leftover_trials(storage_url: str, study_name: str) -> list[int]:
    """Fail the Optuna trials still running once every Tune trial of the search has ended.

    They were asked by a driver that died before Tune recorded their Tune trial: nothing
    will ever tell them, and a study should not show them running forever.
    """
    storage = make_storage(storage_url)
    study = optuna.load_study(study_name=study_name, storage=storage)
    leftovers = [trial.number for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))]
    for number in leftovers:
        _fail_orphan(study, storage, number)
    return leftovers


def fail_nameless_trials(storage_url: str, study_name: str) -> list[int]:
    """Fail the running Optuna trials that no Tune trial holds (a driver died between asking for one
    and naming its Tune trial): nothing will run or tell them."""
    storage = make_storage(storage_url)
    study = optuna.load_study(study_name=study_name, storage=storage)
    nameless = [trial.number for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
                if TUNE_TRIAL_ATTR not in trial.user_attrs]
    for number in nameless:
        _fail_orphan(study, storage, number)
    return nameless


def study_trials(storage_url: str, study_name: str) -> tuple[list[FrozenTrial], str | None]:
    """The trials of a search's study and the run directory that owns it; none before it was made."""
    storage = make_storage(storage_url)
    try:
        study_id = storage.get_study_id_from_name(study_name)
    except KeyError:
        return [], None
    return storage.get_all_trials(study_id, deepcopy=False), storage.get_study_user_attrs(study_id).get(RUN_DIR_ATTR)


def ownership_problem(storage_url: str, study_name: str, run_dir: str, owner: str | None) -> str:
    whose = f"the search in {owner}" if owner else "no prunetune search (made elsewhere)"
    resume = f", or resume that search with `prunetune search --resume {owner}`" if owner else ""
    return (f"search.study_name = {study_name!r}: {redact_url(storage_url)} already holds this study, and it "
            f"belongs to {whose}; choose another search.study_name for {run_dir}{resume}")


def check_study_is_free(storage_url: str, study_name: str, run_dir: str) -> None:
    """Refuse, before anything is fine-tuned, a study that another search (run directory) owns."""
    storage = make_storage(storage_url)
    try:
        study_id = storage.get_study_id_from_name(study_name)
    except KeyError:
        return  # no such study yet: this search creates it
    owner = storage.get_study_user_attrs(study_id).get(RUN_DIR_ATTR)
    has_trials = bool(storage.get_all_trials(study_id, deepcopy=False))
    if owner != run_dir and (owner is not None or has_trials):
        raise ConfigError(ownership_problem(storage_url, study_name, run_dir, owner))
