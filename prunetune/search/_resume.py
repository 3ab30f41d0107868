"""What a resumed search continues, read from the project's own files only.

A resume reads ``results.parquet``, the Optuna study, the rung ladder (``scheduler.json``,
read by the scheduler) and each unfinished trial's last checkpoint (safetensors and JSON, as
the trial wrote them; Tune keeps them in its experiment folders). It then starts a new Tune
experiment, in a folder of its own under ``tune/``, that runs on the trials still to end,
each with its configuration, its id (directory and row) and its checkpoint, and then draws
new trials up to ``search.num_trials``. Tune's own saved experiment (its pickles, its
snapshot, its search generator's state) is never read.

Each Tune trial of the search has one Optuna trial carrying its id (``tune_trial_id``); a
trial whose worker was lost and that a resume then finished has a COMPLETE copy carrying the
same id. The latest Optuna trial of each id says where that trial stands.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Sequence

from optuna.trial import FrozenTrial, TrialState
from ray.tune import Callback

from prunetune.cluster import RunDir
from prunetune.config import flatten_dotted
from prunetune.errors import ConfigError
from prunetune.names import (
    CHECKPOINT_STATE,
    CONFIG_FILE,
    ERRORED,
    RESUMED_CHECKPOINT,
    RESUMED_TRIAL,
    STARTED_CONFIG_FILE,
    STATUS,
    TRIAL_ID,
    TUNE_DIR,
)
from prunetune.search._optuna import DUPLICATE_OF, FAILED, TUNE_TRIAL_ATTR, Continued

#: The keys of config.yaml a resume accepts changed: where the search runs and how much it
#: prints. Everything else must be as the search started (the README's "A search that survives").
MAY_CHANGE_ON_RESUME = ("cluster.address", "search.verbosity")
#: The Tune experiment of each resume, under ``tune/`` (the first one is ``tune/`` itself).
RESUMED_EXPERIMENT = "resumed-{}"
_RESUMED_EXPERIMENT = re.compile(r"resumed-(\d+)")
_CHECKPOINT = re.compile(r"checkpoint_\d+")


@dataclass(frozen=True)
class ToContinue:
    """A trial a resume runs on: its id, its Optuna trial, its parameters, its last checkpoint."""

    trial_id: str
    number: int
    params: Mapping[str, Any]
    checkpoint: str | None  # where its newest complete checkpoint lies (path or URI); None: from the start

    def continued(self) -> Continued:
        """What the searcher hands Tune for it: the parameters, the trial's id and its checkpoint."""
        config = {**self.params, RESUMED_TRIAL: self.trial_id}
        if self.checkpoint:
            config[RESUMED_CHECKPOINT] = self.checkpoint
        return Continued(number=self.number, config=config)


@dataclass(frozen=True)
class ResumePlan:
    """The trials to run on (in the order they were made), and how many new ones to draw."""

    to_continue: tuple[ToContinue, ...]
    new_trials: int

    @property
    def num_samples(self) -> int:
        """Tune's num_samples: -1 (until the searcher ends it) when a time budget alone bounds the search."""
        return -1 if self.new_trials < 0 else len(self.to_continue) + self.new_trials


# --------------------------------------------------------------------------- the configuration


def record_started_config(config_dict: Mapping[str, Any], run: RunDir) -> None:
    """Keep the configuration the search starts with, for a resume to compare config.yaml with."""
    run.local_path(STARTED_CONFIG_FILE).write_text(json.dumps(config_dict, indent=1, sort_keys=True))
    run.push(STARTED_CONFIG_FILE)


def check_unchanged(config_dict: Mapping[str, Any], run: RunDir) -> None:
    """Refuse a resume whose config.yaml differs from the search's start beyond :data:`MAY_CHANGE_ON_RESUME`.

    A run directory from before the start was recorded has nothing to compare with: accepted.
    """
    run.pull(STARTED_CONFIG_FILE)
    path = run.local_path(STARTED_CONFIG_FILE)
    if not path.is_file():
        return
    try:
        started = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise ConfigError(f"{run.join(STARTED_CONFIG_FILE)}: not the JSON configuration a search starts with "
                          f"({error}); it cannot be resumed") from None
    changed = changed_keys(started, config_dict)
    if changed:
        listed = ", ".join(f"{key} ({_shown(started, key)} -> {_shown(config_dict, key)})" for key in changed)
        raise ConfigError(
            f"--resume {run.location}: {CONFIG_FILE} differs from the configuration the search started with in "
            f"{listed}; a resume may change only {', '.join(MAY_CHANGE_ON_RESUME)}. Undo those edits, or start a "
            f"new search with the new configuration (another --output)")


def changed_keys(started: Mapping[str, Any], now: Mapping[str, Any]) -> list[str]:
    """The dotted keys whose values differ, a dimension of the space counting as one key (added or
    removed ones too); keys only one side knows of outside the space (another prunetune's) are not compared."""
    before, after = _dotted(started), _dotted(now)
    keys = (before.keys() & after.keys()) | {key for key in before.keys() ^ after.keys() if key.startswith("space.")}
    return sorted(key for key in keys
                  if before.get(key, _ABSENT) != after.get(key, _ABSENT) and key not in MAY_CHANGE_ON_RESUME)


_ABSENT = object()


def _dotted(config: Mapping[str, Any]) -> dict[str, Any]:
    space = config.get("space") or {}
    flat = flatten_dotted({key: value for key, value in config.items() if key != "space"})
    flat.update({f"space.{key}": value for key, value in space.items()})  # a dimension's keys are dotted already
    return flat


def _shown(config: Mapping[str, Any], key: str) -> str:
    value = _dotted(config).get(key, _ABSENT)
    return "absent" if value is _ABSENT else json.dumps(value)


# --------------------------------------------------------------------------- the trials


def plan_resume(trials: Iterable[FrozenTrial], rows: Sequence[Mapping[str, Any]], run: RunDir, *,
                num_trials: int | None) -> ResumePlan:
    """Which of the study's ``trials`` run on, and how many new ones make up ``num_trials`` (-1: as
    many as a time budget allows, when it alone ends the search)."""
    statuses = {row[TRIAL_ID]: row[STATUS] for row in rows}
    latest = latest_trials(trials)
    to_continue = tuple(
        ToContinue(trial_id=trial_id, number=trial.number, params=dict(trial.params),
                   checkpoint=newest_checkpoint(run, trial_id))
        for trial_id, trial in sorted(latest.items(), key=lambda item: item[1].number)
        if runs_on(trial, statuses.get(trial_id)))
    new_trials = -1 if num_trials is None else max(0, num_trials - len(latest))
    return ResumePlan(to_continue=to_continue, new_trials=new_trials)


def latest_trials(trials: Iterable[FrozenTrial]) -> dict[str, FrozenTrial]:
    """Each Tune trial's latest Optuna trial, by trial id (clones told from their twin left out)."""
    latest: dict[str, FrozenTrial] = {}
    for trial in trials:
        trial_id = trial.user_attrs.get(TUNE_TRIAL_ATTR)
        if trial_id is None or DUPLICATE_OF in trial.user_attrs:
            continue
        if trial_id not in latest or trial.number > latest[trial_id].number:
            latest[str(trial_id)] = trial
    return latest


def runs_on(trial: FrozenTrial, status: str | None) -> bool:
    """Whether a resume runs the trial on, given its Optuna trial and its row's status (None: no row).

    It runs on when it was running, when Tune gave up on its worker or node (told FAIL without
    ``failed``; a FAIL with ``failed`` belonged to no Tune trial), and when its outcome is in the
    study but its row is missing or says otherwise (the driver died in between): the trial then
    reports its result again, and the study is not told twice.
    """
    if trial.state == TrialState.RUNNING:
        return True
    if trial.state == TrialState.FAIL:
        return FAILED not in trial.user_attrs
    if trial.state == TrialState.COMPLETE:
        return status is None or (status == ERRORED) != bool(trial.user_attrs.get(FAILED))
    return False


def moved_from(owner: str | None, run: RunDir, *, own_study: bool) -> str | None:
    """The run directory the study names as its owner when the search moved from there (else None).

    A study in the run directory's own file moved with it; one in a shared database is taken
    along only when its owner no longer holds a search.
    """
    if owner is None or owner == run.location:
        return None
    return owner if own_study or not RunDir(owner).exists(CONFIG_FILE) else None


# --------------------------------------------------------------------------- Tune's folders


def experiments(run: RunDir) -> list[tuple[str, ...]]:
    """The Tune experiments of the search, oldest first: ``tune/`` and each resume's ``tune/resumed-N/``."""
    numbers = sorted(int(match.group(1)) for name in run.listdir(TUNE_DIR)
                     if (match := _RESUMED_EXPERIMENT.fullmatch(name)))
    return [(TUNE_DIR,), *((TUNE_DIR, RESUMED_EXPERIMENT.format(number)) for number in numbers)]


def next_experiment(run: RunDir) -> str:
    """The folder name, under ``tune/``, of the experiment a resume starts."""
    return RESUMED_EXPERIMENT.format(len(experiments(run)))


def newest_checkpoint(run: RunDir, trial_id: str) -> str | None:
    """Where the trial's newest complete checkpoint lies (newest experiment first), or None.

    A checkpoint is complete when its progress file reads as JSON: a copy cut short (a full
    disk, a driver killed while Tune uploaded it) is passed over for an older one.
    """
    for experiment in reversed(experiments(run)):
        names = [name for name in run.listdir(*experiment, trial_id) if _CHECKPOINT.fullmatch(name)]
        for name in sorted(names, reverse=True):
            if _readable(run, *experiment, trial_id, name, CHECKPOINT_STATE):
                return run.join(*experiment, trial_id, name)
    return None


def _readable(run: RunDir, *parts: str) -> bool:
    try:
        json.loads(run.read_bytes(*parts))
    except (OSError, ValueError):
        return False
    return True


class ResumedCheckpointCleanup(Callback):
    """Deletes a trial's checkpoints in the earlier experiments once it has ended in this one
    (``CheckpointCleanup`` deletes this experiment's): a finished trial keeps its model and
    its result, nothing else. A trial lost again keeps them, for the next resume."""

    def __init__(self, run: RunDir, *, experiment: str):
        self._run = run
        self._experiment = (TUNE_DIR, experiment)

    def on_trial_complete(self, iteration: int, trials: list, trial, **info) -> None:
        trial_id = (trial.config or {}).get(RESUMED_TRIAL)
        if trial_id:
            for experiment in (folder for folder in experiments(self._run) if folder != self._experiment):
                for name in self._run.listdir(*experiment, trial_id):
                    if _CHECKPOINT.fullmatch(name):
                        _delete_folder(self._run, *experiment, trial_id, name)


def _delete_folder(run: RunDir, *parts: str) -> None:
    import pyarrow.fs

    if run.is_remote:
        filesystem, path = pyarrow.fs.FileSystem.from_uri(run.join(*parts))
    else:
        filesystem, path = pyarrow.fs.LocalFileSystem(), str(run.local_path(*parts))
    try:
        filesystem.delete_dir(path)
    except (FileNotFoundError, OSError):  # gone already: nothing to keep
        pass
