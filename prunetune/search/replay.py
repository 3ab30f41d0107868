"""Replay searches on recorded learning curves, with a simulated clock.

A *curves table* holds every report of real trials that ran to their last step (one row per
report: the seconds since the trial started, the step, the objectives it would score if it
stopped there, and at the end its final objectives), with the search's configuration in its
metadata. :func:`replay` runs a search on it: the same searcher (Optuna's samplers through
:class:`ParetoOptunaSearch`) and the same rung ladder (:class:`RungLadder`) as a live
search, ``max_concurrent`` workers, and a clock that advances by the recorded seconds. A
sampled configuration is answered by the nearest recorded trial (distance over the
searched dimensions, each scaled to [0, 1]; a categorical value that differs counts 1).
"""

from __future__ import annotations

import heapq
import json
import math
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from prunetune import metrics as M
from prunetune.config import Config, validate
from prunetune.names import (
    CONFIG_FILE,
    CONFIG_PREFIX,
    ERRORED,
    RESULT_FILE,
    RESULTS_FILE,
    STATUS,
    TERMINATED,
    TRIAL_ID,
    TUNE_DIR,
    WALL_SECONDS,
)
from prunetune.search._results import float_or_none, read_rows

#: Columns of a curves table besides the trial's ``trial.*`` values.
TRIAL, STEP, SECONDS, FINAL, FAILED = "trial", M.STEP, "seconds", "final", M.FAILED
CURVE_METRICS: tuple[str, ...] = (*M.RUNG_METRICS, *M.RUNG_INTERVALS, M.PROJECTION_SECONDS)
#: Seconds a report spent evaluating and checkpointing (its trial's rung time less its projections, shared
#: evenly by its reports): what a live trial saves at a report between rungs, where it evaluates nothing.
EVALUATION_SECONDS = "evaluation_seconds"
#: Keys of the table's metadata.
CONFIG_KEY, COMMAND_KEY = b"prunetune.config", b"prunetune.command"


# --------------------------------------------------------------------------- recording


def write_curves(run_dir: str | Path, out: str | Path, *, command: str) -> pa.Table:
    """The curves table of a finished search in ``run_dir`` (every report of every trial), written to ``out``."""
    run_dir, out = Path(run_dir), Path(out)
    config_text = (run_dir / CONFIG_FILE).read_text()
    rows = []
    for trial in read_rows(run_dir / RESULTS_FILE):
        result_file = _newest_result_file(run_dir, trial[TRIAL_ID])
        if result_file is not None and trial[STATUS] in (TERMINATED, ERRORED):  # ran to its end, or failed
            rows += _trial_reports(trial, result_file)
    table = pa.Table.from_pylist(rows).replace_schema_metadata(
        {CONFIG_KEY: config_text.encode(), COMMAND_KEY: command.encode()})
    out.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, out, compression="zstd")
    return table


def _evaluation_seconds(trial: Mapping[str, Any], reports: Sequence[Mapping[str, Any]]) -> float | None:
    """The seconds each intermediate report of the trial spent on anything but projecting (None when
    its row has no time split)."""
    rung_seconds = float_or_none(trial.get(M.RUNG_SECONDS))
    intermediate = [r for r in reports if M.missing_final_keys(r) and not r.get(M.FAILED)]
    if rung_seconds is None or not intermediate:
        return None
    projected = sum(float_or_none(r.get(M.PROJECTION_SECONDS)) or 0.0 for r in intermediate)
    return max(0.0, rung_seconds - projected) / len(intermediate)


def _newest_result_file(run_dir: Path, trial_id: str) -> Path | None:
    """The trial's reports in the newest Tune experiment that ran it (a resumed search runs a trial
    that was cut short again, under ``tune/resumed-N/``)."""
    candidates = [run_dir / TUNE_DIR / trial_id / RESULT_FILE,
                  *sorted((run_dir / TUNE_DIR).glob(f"resumed-*/{trial_id}/{RESULT_FILE}"),
                          key=lambda path: int(path.parent.parent.name.split("-")[1]))]
    found = [path for path in candidates if path.is_file()]
    return found[-1] if found else None


def _trial_reports(trial: Mapping[str, Any], result_file: Path) -> list[dict[str, Any]]:
    """One row per report of a trial; the clock starts when the trial did (Ray's worker start included)."""
    reports = [json.loads(line) for line in result_file.read_text().splitlines() if line.strip()]
    reports = [r for r in reports if r.get(M.STEP) is not None or r.get(M.FAILED)]
    values = {key: value for key, value in trial.items() if key.startswith(CONFIG_PREFIX)}
    failed = trial[STATUS] == ERRORED
    wall = float(trial[WALL_SECONDS])
    start_offset = wall - float(reports[-1]["time_total_s"]) if reports else wall
    evaluation = _evaluation_seconds(trial, reports)
    rows = []
    for report in reports:
        final = not M.missing_final_keys(report) or bool(report.get(M.FAILED))
        rows.append({
            TRIAL: trial[TRIAL_ID], STEP: int(report.get(M.STEP) or 0), FINAL: final, FAILED: failed,
            SECONDS: wall if final else float(report["time_total_s"]) + start_offset,
            **{key: float_or_none(report.get(key)) for key in CURVE_METRICS}, **values,
            EVALUATION_SECONDS: None if final else evaluation,
        })
    if failed and not any(row[FINAL] for row in rows):
        rows.append({TRIAL: trial[TRIAL_ID], STEP: 0, FINAL: True, FAILED: True, SECONDS: wall,
                     **{key: None for key in CURVE_METRICS}, **values})
    return rows



# --------------------------------------------------------------------------- the recorded trials


@dataclass(frozen=True)
class Report:
    """One report of a recorded trial: when it came (seconds since the trial started) and what it said."""

    step: int
    seconds: float
    values: dict[str, float]
    projection_seconds: float = 0.0
    evaluation_seconds: float = 0.0  # what it spent evaluating and checkpointing


@dataclass(frozen=True)
class RecordedTrial:
    trial_id: str
    params: dict[str, Any]  # the searched trial.* values
    reports: tuple[Report, ...]  # intermediate, in step order
    final: Report
    failed: bool


@dataclass
class Curves:
    """A curves table: the search's configuration and every recorded trial."""

    config: Config
    trials: list[RecordedTrial]
    command: str = ""
    _searched: dict[str, Any] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self._searched = {key: dim for key, dim in self.config.space.items() if dim.is_searched}
        if not self.trials:
            raise ValueError("a curves table needs at least one recorded trial")

    @classmethod
    def read(cls, path: str | Path) -> "Curves":
        table = pq.read_table(path)
        metadata = table.schema.metadata or {}
        import yaml

        config = validate(yaml.safe_load(metadata[CONFIG_KEY].decode()))
        return cls(config=config, trials=recorded_trials(table.to_pylist(), config),
                   command=metadata.get(COMMAND_KEY, b"").decode())

    def nearest(self, params: Mapping[str, Any]) -> RecordedTrial:
        """The recorded trial closest to ``params`` over the searched dimensions (ties: the first recorded)."""
        return min(self.trials, key=lambda trial: self._distance(params, trial.params))

    def _distance(self, a: Mapping[str, Any], b: Mapping[str, Any]) -> float:
        total = 0.0
        for key, dim in self._searched.items():
            if dim.kind == "choice":
                total += 0.0 if a.get(key) == b.get(key) else 1.0
                continue
            low, high, x, y = float(dim.low), float(dim.high), float(a[key]), float(b[key])
            if dim.kind == "loguniform" or dim.log:
                low, high, x, y = (math.log(v) for v in (low, high, x, y))
            total += ((x - y) / (high - low)) ** 2
        return total


def recorded_trials(rows: Sequence[Mapping[str, Any]], config: Config) -> list[RecordedTrial]:
    """Group a curves table's rows by trial."""
    searched = [key for key, dim in config.space.items() if dim.is_searched]
    by_trial: dict[str, list[Mapping[str, Any]]] = {}
    for row in rows:
        by_trial.setdefault(str(row[TRIAL]), []).append(row)
    trials = []
    for trial_id, reports in by_trial.items():
        finals = [r for r in reports if r[FINAL]]
        if not finals:
            continue  # a trial recorded without its end is no answer
        steps = sorted((r for r in reports if not r[FINAL]), key=lambda r: r[STEP])
        trials.append(RecordedTrial(trial_id=trial_id, params={key: finals[0][key] for key in searched},
                                    reports=tuple(_report(r) for r in steps), final=_report(finals[0]),
                                    failed=bool(finals[0].get(FAILED))))
    return trials


def _report(row: Mapping[str, Any]) -> Report:
    values = {key: float(row[key]) for key in (*M.RUNG_METRICS, *M.RUNG_INTERVALS) if row.get(key) is not None}
    return Report(step=int(row[STEP]), seconds=float(row[SECONDS]), values=values,
                  projection_seconds=float(row.get(M.PROJECTION_SECONDS) or 0.0),
                  evaluation_seconds=float(row.get(EVALUATION_SECONDS) or 0.0))


# --------------------------------------------------------------------------- the simulated search


@dataclass
class ReplayRun:
    """One replayed search: the hypervolume of its finished trials after each one finished."""

    sampler: str
    scheduler: str
    seed: int
    times: list[float] = field(default_factory=list)  # simulated seconds at each finished trial
    hypervolumes: list[float] = field(default_factory=list)
    started: int = 0
    stopped: int = 0
    finished: int = 0
    trial_seconds: float = 0.0  # the workers' busy time

    def hypervolume_at(self, seconds: float) -> float:
        values = [hv for time, hv in zip(self.times, self.hypervolumes) if time <= seconds]
        return values[-1] if values else 0.0

    def time_to(self, target: float) -> float:
        """Simulated seconds until the hypervolume reached ``target`` (inf if it never did)."""
        return next((time for time, hv in zip(self.times, self.hypervolumes) if hv >= target - 1e-12), math.inf)


@dataclass(order=True)
class _Event:
    time: float
    order: int
    trial: str = field(compare=False)
    report: Report | None = field(compare=False, default=None)  # None: the trial's final report


class Scorer:
    """The hypervolume of finished, feasible trials, on bounds fixed by the whole table (so that
    every replay of it is measured on the same scale)."""

    def __init__(self, curves: Curves):
        from prunetune.analysis.front import Bounds
        from prunetune.pareto import as_minimisation

        self.objectives = dict(curves.config.search.objectives)
        self.directions = list(self.objectives.values())
        self.limits = curves.config.search.constraints.limits()
        self.columns = curves.config.search.constraints.columns()
        finals = [t.final.values for t in curves.trials if not t.failed and self.feasible(t.final.values)]
        values = np.array([[v[k] for k in self.objectives] for v in finals], dtype=float)
        self.bounds = Bounds.of(as_minimisation(values, self.directions))

    def feasible(self, values: Mapping[str, float]) -> bool:
        if any(not math.isfinite(values.get(key, math.nan)) for key in self.objectives):
            return False
        return all(values.get(self.columns[name], math.inf) <= limit for name, limit in self.limits.items())

    def hypervolume(self, finals: Sequence[Mapping[str, float]]) -> float:
        from prunetune.analysis.front import hypervolume

        values = np.array([[v[k] for k in self.objectives] for v in finals if self.feasible(v)], dtype=float)
        return hypervolume(values.reshape(-1, len(self.objectives)), self.directions, self.bounds)


def replay(curves: Curves, *, sampler: str, scheduler: str, seed: int, num_trials: int, horizon: float,
           max_trials: int | None = None, stopped_as: str | None = None, scorer: Scorer | None = None) -> ReplayRun:
    """Replay one search on ``curves`` until the simulated clock passes ``horizon`` seconds.

    The search is the recorded one's configuration with ``sampler``, ``scheduler`` and
    ``seed``; ``num_trials`` sizes the sampler as a live search of that many trials would
    (population, start-up trials); trials keep being started while the clock is below
    ``horizon`` (at most ``max_trials``, default 4 x ``num_trials``).
    """
    from prunetune.search._driver import make_searcher
    from prunetune.search._optuna import STOPPED_TOLD_AS
    from prunetune.search.scheduler import make_ladder, rung_objectives

    config = curves.config.with_values({"search.sampler": sampler, "search.scheduler": scheduler,
                                        "search.seed": seed, "search.num_trials": num_trials,
                                        "search.verbosity": 0})
    scorer = scorer or Scorer(curves)
    ladder = make_ladder(config) if scheduler != "fifo" else None
    ranked = rung_objectives(config)
    run = ReplayRun(sampler=sampler, scheduler=scheduler, seed=seed)
    with tempfile.TemporaryDirectory(prefix="prunetune-replay-") as folder:
        searcher = make_searcher(config, storage_url=f"sqlite:///{folder}/study.db", run_dir=folder,
                                 baseline=_baseline(curves), stopped_as=stopped_as or STOPPED_TOLD_AS)
        _Simulation(curves, searcher, ladder, ranked, scorer, run, horizon=horizon,
                    workers=config.search.max_concurrent, max_trials=max_trials or 4 * num_trials).run()
    return run


class _Simulation:
    """The event loop: each worker runs one trial at a time; a trial's reports arrive at its recorded times."""

    def __init__(self, curves, searcher, ladder, ranked, scorer, run: ReplayRun, *, horizon, workers, max_trials):
        self.curves, self.searcher, self.ladder, self.ranked = curves, searcher, ladder, ranked
        self.scorer, self.run_, self.horizon, self.workers, self.max_trials = scorer, run, horizon, workers, max_trials
        self.events: list[_Event] = []
        self.live: dict[str, float] = {}  # trial -> its start time
        self.answers: dict[str, RecordedTrial] = {}  # trial -> the recorded trial answering it
        self.finals: list[dict[str, float]] = []
        self.order = 0

    def run(self) -> None:
        for _ in range(self.workers):
            self._start(0.0)
        while self.events:
            event = heapq.heappop(self.events)
            if event.trial not in self.live:
                continue  # a report of a trial stopped before it
            if event.report is None:
                self._finish(event)
            elif not self._ranked_on(event):
                self._stop(event)

    def _start(self, now: float) -> None:
        if now >= self.horizon or self.run_.started >= self.max_trials:
            return
        trial_id = f"replay_{self.run_.started:05d}"
        self.run_.started += 1
        recorded = self.curves.nearest(self.searcher.suggest(trial_id))
        self.live[trial_id], self.answers[trial_id] = now, recorded
        # The recording projected objectives at every report. A live trial in a FIFO search projects
        # none; in a search with rungs, it evaluates and projects at the rungs only (a report between
        # them is a checkpoint). Its reports and its end come that much sooner.
        rungs = set() if self.ladder is None else set(self.ladder.rungs)
        saved = 0.0
        for report in recorded.reports:
            if self.ladder is None:
                saved += report.projection_seconds
            elif report.step in rungs:
                self._push(now + report.seconds - saved, trial_id, report)
            else:
                saved += report.projection_seconds + report.evaluation_seconds
        self._push(now + recorded.final.seconds - saved, trial_id, None)

    def _push(self, time: float, trial_id: str, report: Report | None) -> None:
        self.order += 1
        heapq.heappush(self.events, _Event(time, self.order, trial_id, report))

    def _ranked_on(self, event: _Event) -> bool:
        values = event.report.values
        return self.ladder.on_report(event.trial, event.report.step, self.ranked.recorded(values),
                                     ranked_as=self.ranked.ranked_as(values)).go_on

    def _stop(self, event: _Event) -> None:
        result = {**event.report.values, M.STEP: event.report.step}
        self.searcher.on_trial_complete(event.trial, result=result)
        self.run_.stopped += 1
        self._end(event)

    def _finish(self, event: _Event) -> None:
        recorded = self.answers.pop(event.trial)
        if recorded.failed:
            result: dict[str, Any] = {M.FAILED: True, M.ERROR: "recorded trial failed"}
        else:
            result = {key: recorded.final.values.get(key, math.nan) for key in M.FINAL_METRIC_KEYS}
            self.finals.append(recorded.final.values)
            self.run_.finished += 1
            self.run_.times.append(event.time)
            self.run_.hypervolumes.append(self.scorer.hypervolume(self.finals))
        self.searcher.on_trial_complete(event.trial, result=result)
        self._end(event)

    def _end(self, event: _Event) -> None:
        self.answers.pop(event.trial, None)
        self.run_.trial_seconds += event.time - self.live.pop(event.trial)
        self._start(event.time)


def _baseline(curves: Curves) -> dict[str, float]:
    """The teacher's accuracy, as each recorded trial saw it (accuracy + accuracy drop)."""
    for trial in curves.trials:
        values = trial.final.values
        if M.ACCURACY in values and M.ACCURACY_DROP in values:
            return {M.ACCURACY: values[M.ACCURACY] + values[M.ACCURACY_DROP]}
    return {}
