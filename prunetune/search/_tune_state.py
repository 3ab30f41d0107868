"""Tune's saved experiment: read back in step with itself, or found damaged.

Ray stages the experiment snapshot (trials and their statuses) and the search generator's
state (how many trials it made, which ones hold a concurrency slot) in a local folder and
uploads them to the run directory one file after the other, in the background. A driver
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
driver then continues the search from ``results.parquet`` and the study instead.
"""

from __future__ import annotations

import fnmatch
import glob
import json
import logging
import os
from dataclasses import dataclass
from typing import Any, Callable

import ray.cloudpickle as cloudpickle
from ray.tune.search import ConcurrencyLimiter, Searcher, SearchGenerator

from prunetune.cluster import RunDir
from prunetune.names import TUNE_DIR
from prunetune.search._optuna import ParetoOptunaSearch

logger = logging.getLogger(__name__)

#: Tune's experiment snapshot files (``TuneController.CKPT_FILE_TMPL``); Tune restores the newest name.
EXPERIMENT_STATE_PATTERN = "experiment_state-*.json"
#: Every file a resume reads back (the newest name of each), with how it is read.
SAVED_STATE_FILES: tuple[tuple[str, Callable[[bytes], Any]], ...] = (
    (EXPERIMENT_STATE_PATTERN, json.loads),
    (SearchGenerator.CKPT_FILE_TMPL.format("*"), cloudpickle.loads),
    (ParetoOptunaSearch.CKPT_FILE_TMPL.format("*"), json.loads),
)
TERMINATED = "TERMINATED"


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


def snapshot_trials(experiment_dir: str) -> list[SnapshotTrial] | None:
    """The trials of the newest experiment snapshot in ``experiment_dir``; None without one."""
    paths = glob.glob(os.path.join(experiment_dir, EXPERIMENT_STATE_PATTERN))
    if not paths:
        return None
    with open(max(paths), encoding="utf-8") as handle:
        state = json.load(handle)
    trials = []
    for trial_json, _run_metadata in state["trial_data"]:
        trial = json.loads(trial_json)
        trials.append(SnapshotTrial(trial_id=str(trial["trial_id"]), status=str(trial["status"])))
    return trials


class ConsistentSearchGenerator(SearchGenerator):
    """A ``SearchGenerator`` whose restored count and concurrency slots follow the restored trials.

    Tune downloads the run directory's snapshot files into ``dirpath`` before it calls
    :meth:`restore_from_dir`, so the snapshot read here is the one Tune restores its trials
    from. A trial not yet terminated holds a slot: Tune runs it again on resume (the driver
    resumes errored trials too) and its outcome must reach the searcher.
    """

    def restore_from_dir(self, dirpath: str) -> None:
        super().restore_from_dir(dirpath)
        trials = snapshot_trials(dirpath)
        if trials is None:
            return
        if self._counter != len(trials):
            logger.info("The search generator counted %d trials and the experiment snapshot holds %d: "
                        "the snapshot's count is kept", self._counter, len(trials))
        self._counter = len(trials)
        unfinished = {trial.trial_id for trial in trials if trial.status != TERMINATED}
        for limiter in self._limiters():
            limiter.live_trials = set(unfinished)
            limiter.num_unfinished_live_trials = len(unfinished)

    def _limiters(self) -> list[ConcurrencyLimiter]:
        found, searcher = [], self.searcher
        while searcher is not None:
            if isinstance(searcher, ConcurrencyLimiter):
                found.append(searcher)
            searcher = getattr(searcher, "searcher", None)
        return found
