"""Early stopping as a Ray Tune ``TrialScheduler``: ASHA and multi-objective ASHA.

:class:`RungScheduler` answers each intermediate report with the decision of a
:class:`~prunetune.search.rungs.RungLadder` (``moasha``: every objective of the search;
``asha``: the first one). It composes with any Tune searcher, checkpoints and the cluster.
Tune does not save a scheduler with its experiment, so the ladder is written to the run
directory (``scheduler.json``) at every decision and read back by ``--resume``: a trial
stopped before the driver died stays stopped, and rungs keep what they recorded.
"""

from __future__ import annotations

import os
from pathlib import Path

from ray.tune.schedulers import FIFOScheduler, TrialScheduler

from prunetune import metrics as M
from prunetune.config import Config, scheduler_rungs
from prunetune.search.rungs import RungLadder, RungObjectives
from prunetune.trainables.trainable import run_trial_id


def make_scheduler(config: Config, *, state_path: str | Path | None = None) -> TrialScheduler:
    """FIFO, or a :class:`RungScheduler` for ``search.scheduler`` = asha | moasha | moasha-interval."""
    search = config.search
    if search.scheduler == "fifo":
        return FIFOScheduler()
    return RungScheduler(make_ladder(config), objectives=rung_objectives(config), state_path=state_path)


def ranked_objectives(config: Config) -> dict[str, str]:
    """The objectives a rung ranks on: all of them (moasha), or the first (asha)."""
    objectives = dict(config.search.objectives)
    if config.search.scheduler == "asha":
        first = next(iter(objectives))
        return {first: objectives[first]}
    return objectives


def rung_objectives(config: Config) -> RungObjectives:
    """What the search's rungs rank on (:func:`ranked_objectives`), and how (``moasha-interval``)."""
    ranked = ranked_objectives(config)
    return RungObjectives(keys=tuple(ranked), directions=tuple(ranked.values()),
                          benefit_of_doubt=config.search.scheduler == "moasha-interval")


def make_ladder(config: Config) -> RungLadder:
    search = config.search
    return RungLadder(rungs=scheduler_rungs(config), directions=list(ranked_objectives(config).values()),
                      reduction_factor=search.reduction_factor)


class RungScheduler(FIFOScheduler):
    """Stops a trial at a rung where it ranks below the top ``1 / reduction_factor``."""

    def __init__(self, ladder: RungLadder, *, objectives: RungObjectives, state_path: str | Path | None = None):
        super().__init__()
        self.ladder = ladder
        self.objectives = objectives
        self._state_path = str(state_path) if state_path else None

    def on_trial_result(self, tune_controller, trial, result: dict) -> str:
        step = result.get(M.STEP)
        if step is None or not M.missing_final_keys(result):  # only intermediate reports are ranked
            return TrialScheduler.CONTINUE
        if any(key not in result for key in self.objectives.keys):  # a checkpoint between rungs: nothing to rank
            return TrialScheduler.CONTINUE
        decision = self.ladder.on_report(run_trial_id(trial.config, trial.trial_id), int(step),
                                         self.objectives.recorded(result), ranked_as=self.objectives.ranked_as(result))
        if decision.rung is not None:
            self._save()
        return TrialScheduler.CONTINUE if decision.go_on else TrialScheduler.STOP

    def debug_string(self) -> str:
        counts = ", ".join(f"{rung}: {len(records)}" for rung, records in self.ladder.records.items())
        return f"rung ladder (trials ranked per rung step: {counts}); {len(self.ladder.stopped())} stopped"

    # ------------------------------------------------------------------ state in the run directory

    def reopen_at(self, state_path: str | Path) -> None:
        """Continue from the ladder a driver wrote at ``state_path`` before it stopped."""
        self._state_path = str(state_path)
        if os.path.isfile(self._state_path):
            self.ladder = RungLadder.from_json(Path(self._state_path).read_text())

    def _save(self) -> None:
        if self._state_path is None:
            return
        temporary = f"{self._state_path}.{os.getpid()}.tmp"
        Path(temporary).write_text(self.ladder.to_json())
        os.replace(temporary, self._state_path)
