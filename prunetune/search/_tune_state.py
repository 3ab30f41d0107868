"""Tune's saved experiment: read back in step with itself, or found damaged.

Ray stages the experiment snapshot (trials and their statuses) and the search generator's
state (how many trials it made, which ones hold a concurrency slot) in a local folder and
copies the staging folder to the run directory in the background, file by file. A driver
that dies during an upload, or a run directory that fills up, leaves the two out of step,
and Ray restores each as it finds it:

- a generator state newer than the snapshot counts trials Tune no longer knows, and the
  resumed search ends short of ``num_trials``;
- an older one counts too few, and the search runs more than ``num_trials``;
- its concurrency limiter keeps slots for trials Tune no longer knows (the search waits
  for them forever), or lacks a trial Tune restarts, whose outcome it then never passes
  on to the Optuna searcher.

:class:`ConsistentSearchGenerator` takes the trial list from the snapshot Tune restores
and sets the count and the slots from it.

An upload into a full file system can also leave a file cut short, which Tune cannot
restore at all: :func:`saved_state_problem` finds that before the resume starts, and the
driver then sets the files aside (:func:`set_aside_saved_state`) and continues the search
from ``results.parquet`` and the study instead.
"""

from __future__ import annotations

import fnmatch
import json
import logging
import time
from dataclasses import dataclass
from typing import Any, Callable

import ray.cloudpickle as cloudpickle
from ray.tune.execution.tune_controller import TuneController
from ray.tune.experiment import Trial
from ray.tune.search import ConcurrencyLimiter, Searcher, SearchGenerator

from prunetune.cluster import RunDir
from prunetune.names import TUNE_DIR
from prunetune.search._optuna import ParetoOptunaSearch

logger = logging.getLogger(__name__)

#: Tune's experiment snapshot files; Tune restores the newest name.
EXPERIMENT_STATE_PATTERN = TuneController.CKPT_FILE_TMPL.format("*")
#: The files of Tune's saved experiment that a resume reads back (the newest name of each), with
#: how each is read (``tuner.pkl``, written only when an experiment starts, is not among them).
SAVED_STATE_FILES: tuple[tuple[str, Callable[[bytes], Any]], ...] = (
    (EXPERIMENT_STATE_PATTERN, json.loads),
    (SearchGenerator.CKPT_FILE_TMPL.format("*"), cloudpickle.loads),
    (ParetoOptunaSearch.CKPT_FILE_TMPL.format("*"), json.loads),
)
#: Where :func:`set_aside_saved_state` moves files Tune cannot restore, under ``tune/``.
SET_ASIDE_DIR = "unrestorable-{}"


@dataclass(frozen=True)
class SnapshotTrial:
    trial_id: str
    status: str


def search_algorithm(searcher: Searcher, *, max_concurrent: int | None) -> SearchGenerator:
    """What Tune would build from ``searcher`` and ``max_concurrent_trials``, restored consistently."""
    if max_concurrent:
        searcher = ConcurrencyLimiter(searcher, max_concurrent=max_concurrent)
    return ConsistentSearchGenerator(searcher)


def saved_state_problem(run: RunDir) -> str | None:
    """Why Tune could not restore the experiment saved in ``run`` (a file missing or cut short), or None."""
    names = run.listdir(TUNE_DIR)
    for pattern, load in SAVED_STATE_FILES:
        matching = fnmatch.filter(names, pattern)
        if not matching:
            return f"{TUNE_DIR}/ holds no {pattern}"
        newest = max(matching)  # the one Tune would read
        try:
            load(run.read_bytes(TUNE_DIR, newest))
        except Exception as error:  # noqa: BLE001 - any way of failing to read it means the same
            return f"{TUNE_DIR}/{newest} cannot be read ({type(error).__name__}: {error})"
    return None


def set_aside_saved_state(run: RunDir) -> str:
    """Move every file of Tune's saved experiment into a folder of its own, so that the next
    experiment's files are the only ones a later resume can read; returns that folder."""
    folder = SET_ASIDE_DIR.format(time.strftime("%Y%m%d-%H%M%S"))
    for name in run.listdir(TUNE_DIR):
        if any(fnmatch.fnmatch(name, pattern) for pattern, _ in SAVED_STATE_FILES):
            run.move((TUNE_DIR, name), (TUNE_DIR, folder, name))
    return f"{TUNE_DIR}/{folder}"


def run_snapshot_trials(run: RunDir) -> list[SnapshotTrial] | None:
    """The trials of the snapshot Tune restores from ``run`` (the newest name); None without one."""
    matching = fnmatch.filter(run.listdir(TUNE_DIR), EXPERIMENT_STATE_PATTERN)
    if not matching:
        return None
    trials = []
    for trial_json, _run_metadata in json.loads(run.read_bytes(TUNE_DIR, max(matching)))["trial_data"]:
        trial = json.loads(trial_json)
        trials.append(SnapshotTrial(trial_id=str(trial["trial_id"]), status=str(trial["status"])))
    return trials


class ConsistentSearchGenerator(SearchGenerator):
    """A ``SearchGenerator`` whose restored count and concurrency slots follow the restored trials.

    The driver hands it the trials of the snapshot Tune restores (:meth:`expect_trials`, read
    from the run directory as Tune reads it); without them it restores as Ray's own does. A
    trial that Tune runs again holds a slot, so that its outcome reaches the searcher: an
    unfinished one always, an errored one when Tune resumes errored trials.
    """

    _expected: list[SnapshotTrial] | None = None
    _resume_errored = False

    def expect_trials(self, trials: list[SnapshotTrial] | None, *, resume_errored: bool) -> None:
        """Before Tune restores the generator: the trials Tune restores, and whether it resumes errored ones."""
        self._expected = trials
        self._resume_errored = resume_errored

    def restore_from_dir(self, dirpath: str) -> None:
        super().restore_from_dir(dirpath)
        trials, self._expected = self._expected, None
        if trials is None:
            return
        if self._counter != len(trials):
            logger.info("The search generator counted %d trials and the experiment snapshot holds %d: "
                        "the snapshot's count is kept", self._counter, len(trials))
        self._counter = len(trials)
        rerun = {trial.trial_id for trial in trials if self._runs_again(trial.status)}
        for limiter in self._limiters():
            waiting = set(limiter.cached_results)  # batch mode: finished, not yet passed on
            limiter.live_trials = rerun | waiting
            limiter.num_unfinished_live_trials = len(rerun - waiting)

    def _runs_again(self, status: str) -> bool:
        return status != Trial.TERMINATED and (status != Trial.ERROR or self._resume_errored)

    def _limiters(self) -> list[ConcurrencyLimiter]:
        found, searcher = [], self.searcher
        while searcher is not None:
            if isinstance(searcher, ConcurrencyLimiter):
                found.append(searcher)
            searcher = getattr(searcher, "searcher", None)
        return found
