"""The front, re-timed quietly: latency measured again on a node with nothing else running.

In-search latencies are taken while other trials train on the same node, which can only
slow them: here they came out up to 3x the idle figure, enough to move the front. When a
search ends (``search.retime``), and on ``prunetune report RUN_DIR --retime``, trials are
timed again one at a time in a Ray task that takes a whole node, beside the dense teacher,
in alternating rounds. ``front`` (the default) re-times exactly the trials that could be on
the front:

1. first the trials on the front of the in-search figures;
2. then every trial not re-timed yet that would still be on the front if re-timing made it
   as much faster as the most any re-timed trial became (with a 5% margin), until there is
   none: a trial outside that set is dominated even at its most optimistic latency.

``all`` re-times every finished trial; ``off`` none. ``latency_ms``, ``latency_p95_ms``,
``speedup`` and ``teacher_latency_ms`` in results.parquet become the re-timed figures; the
in-search ones move to ``*_in_search`` columns, and ``retime_ratio`` (in-search / re-timed
latency) shows how much the search's figure was off. Each re-timed trial is written as soon
as it is timed, so a search stopped while re-timing continues where it stopped.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from prunetune import metrics as M
from prunetune.errors import MeasureNodeError
from prunetune.names import (
    MODEL_DIR,
    RESULTS_FILE,
    STATUS,
    TEACHER_FILE,
    TERMINATED,
    TRIAL_ID,
    TRIALS_DIR,
)
from prunetune.pareto import nondominated_mask
from prunetune.search._results import read_rows, setting, write_results

#: ``fn(request) -> figures``: ``prunetune.trainables.measure.retime.retime`` unless a test says otherwise.
RetimeFunction = Callable[[Any], dict[str, Any]]
#: Safety margin on the largest in-search / re-timed ratio seen, when bounding the others.
RATIO_MARGIN = 1.05
#: Re-timing is off the trials' critical path and few trials need it, so it times longer than a
#: trial does: with a trial's half second, two idle measurements of one model differed by up to
#: 10% here.
RETIME_MIN_RUN_TIME = 2.0
RETIME_MIN_ROUNDS = 7
#: Re-timing repeats a measurement whose rounds spread wider than this (trials: trial.latency.max_spread).
RETIME_MAX_SPREAD = 0.05
#: How re-timing can move each objective it touches, at a ratio: (latency-like: divided) or speed-up (multiplied).
_OPTIMISTIC: dict[str, Callable[[float, float], float]] = {
    M.LATENCY_MS: lambda value, ratio: value / ratio,
    M.LATENCY_P95_MS: lambda value, ratio: value / ratio,
    M.SPEEDUP: lambda value, ratio: value * ratio,
    M.SPEEDUP_SAME_RUNTIME: lambda value, ratio: value * ratio,
}


@dataclass(frozen=True)
class RetimeOutcome:
    retimed: list[str]
    flagged: list[str]  # re-timed figures more than 10% away from the in-search ones


# --------------------------------------------------------------------------- which trials


def finished_rows(rows: Sequence[Mapping[str, Any]], objectives: Mapping[str, str]) -> list[Mapping[str, Any]]:
    return [row for row in rows if row.get(STATUS) == TERMINATED and all(_finite(row.get(k)) for k in objectives)]


def candidates(rows: Sequence[Mapping[str, Any]], objectives: Mapping[str, str], *, policy: str) -> list[str]:
    """The trials to re-time next (see the module docstring); empty when re-timing is done."""
    finished = finished_rows(rows, objectives)
    pending = [row for row in finished if not row.get(M.RETIMED)]
    if policy == "off" or not pending:
        return []
    if policy == "all":
        return [str(row[TRIAL_ID]) for row in pending]
    done = [row for row in finished if row.get(M.RETIMED)]
    if not done or not any(key in _OPTIMISTIC for key in objectives):
        return _pending_on_front(finished, objectives)
    ratio = largest_ratio(done) * RATIO_MARGIN
    directions = list(objectives.values())
    done_values = _values(done, objectives)
    found = []
    for row in pending:
        point = np.array([[_optimistic(row, key, ratio) for key in objectives]])
        if nondominated_mask(np.vstack([done_values, point]), directions)[-1]:
            found.append(str(row[TRIAL_ID]))
    return found


def _pending_on_front(finished: list[Mapping[str, Any]], objectives: Mapping[str, str]) -> list[str]:
    mask = nondominated_mask(_values(finished, objectives), list(objectives.values()))
    return [str(row[TRIAL_ID]) for row, on_front in zip(finished, mask) if on_front and not row.get(M.RETIMED)]


def largest_ratio(retimed: Sequence[Mapping[str, Any]]) -> float:
    """The most any re-timed trial's latency shrank (in-search / re-timed), at least 1."""
    ratios = [float(row[M.RETIME_RATIO]) for row in retimed if _finite(row.get(M.RETIME_RATIO))]
    return max([1.0, *ratios])


def _optimistic(row: Mapping[str, Any], key: str, ratio: float) -> float:
    value = float(row[key])
    return _OPTIMISTIC[key](value, ratio) if key in _OPTIMISTIC else value


def _values(rows: Sequence[Mapping[str, Any]], objectives: Mapping[str, str]) -> np.ndarray:
    return np.array([[float(row[key]) for key in objectives] for row in rows], dtype=float).reshape(len(rows), -1)


def _finite(value: Any) -> bool:
    try:
        return math.isfinite(float(value))
    except (TypeError, ValueError):
        return False


# --------------------------------------------------------------------------- a row re-timed


def apply_retiming(row: dict[str, Any], figures: Mapping[str, Any]) -> dict[str, Any]:
    """``row`` with the re-timed figures; the in-search ones kept in their own columns (once)."""
    row = dict(row)
    for key in M.RETIMED_METRICS:
        if not row.get(M.RETIMED):
            row[M.in_search(key)] = row.get(key)
        if key in figures:
            row[key] = float(figures[key])
    row.update({key: str(figures[key]) for key in M.TEXT_METRICS if figures.get(key) is not None})
    searched, retimed = row.get(M.in_search(M.LATENCY_MS)), row.get(M.LATENCY_MS)
    row[M.RETIME_RATIO] = float(searched) / float(retimed) if _finite(searched) and _finite(retimed) else None
    row[M.RETIMED] = True
    return row


def is_flagged(row: Mapping[str, Any]) -> bool:
    """Whether re-timing moved the latency by more than 10% either way."""
    return M.retime_flagged(row.get(M.RETIME_RATIO))


def retime_resources(*, cpus_per_node: float, gpu: bool) -> dict[str, float]:
    """A whole node for the re-timing task: all its CPUs, and a whole GPU when the trials ran on one."""
    return {"num_cpus": max(1.0, float(cpus_per_node)), "num_gpus": 1.0 if gpu else 0.0}


# --------------------------------------------------------------------------- the loop


def retime_run(run, *, objectives: Mapping[str, str], policy: str, cpus_per_node: float, gpus_per_trial: float,
               retime_fn: RetimeFunction | None = None, say: Callable[[str], None] = lambda text: None,
               measurer=None) -> RetimeOutcome:
    """Re-time ``run``'s trials (a RunDir) by ``policy``, writing results.parquet after each one;
    with a ``measurer`` (``search.measure_on``) on the deploy nodes, one trial at a time."""
    path = run.local_path(RESULTS_FILE)
    teacher_dir = run_teacher_dir(run)
    measure = measurer.retime if measurer is not None else _whole_node_task(retime_fn, cpus_per_node=cpus_per_node,
                                                                             gpu=gpus_per_trial > 0)
    retimed: list[str] = []
    try:
        while todo := candidates(read_rows(path), objectives, policy=policy):
            say(f"re-timing {len(todo)} trial(s) quietly, each in a task that takes a whole node")
            for trial_id in todo:
                rows = {str(row[TRIAL_ID]): row for row in read_rows(path)}
                request = retime_request(rows[trial_id], run, teacher_dir, gpu=gpus_per_trial > 0)
                rows[trial_id] = apply_retiming(rows[trial_id], measure(request))
                write_results(rows.values(), path)
                run.push(RESULTS_FILE)
                retimed.append(trial_id)
                say(_retimed_line(rows[trial_id]))
    except MeasureNodeError as error:  # the deploy nodes are gone: the in-search figures stay
        say(f"re-timing stopped: {error}")
    flagged = [str(row[TRIAL_ID]) for row in read_rows(path) if is_flagged(row)]
    return RetimeOutcome(retimed=retimed, flagged=flagged)


def _whole_node_task(retime_fn: RetimeFunction | None, *, cpus_per_node: float, gpu: bool) -> RetimeFunction:
    """``request -> figures`` through a Ray task that takes a whole node."""
    import ray

    task = ray.remote(_retime_task).options(**retime_resources(cpus_per_node=cpus_per_node, gpu=gpu))
    return lambda request: ray.get(task.remote(retime_fn, request))


def _retime_task(retime_fn: RetimeFunction | None, request):
    """The body of the whole-node task: the trial's model timed again (torch is imported only here)."""
    if retime_fn is None:
        from prunetune.trainables.measure.retime import retime as retime_fn
    return retime_fn(request)


def retime_request(row: Mapping[str, Any], run, teacher_dir: str, *, gpu: bool):
    from prunetune.trainables.measure.retime import RetimeRequest
    from prunetune.trainables.runtimes import REFERENCE_RUNTIME

    trial_id = str(row[TRIAL_ID])
    run.pull(TRIALS_DIR, trial_id, MODEL_DIR)
    device = str(setting(row, "device", "auto"))
    return RetimeRequest(
        trial_id=trial_id, model_dir=str(run.local_path(TRIALS_DIR, trial_id, MODEL_DIR)), teacher_dir=teacher_dir,
        inference_precision=str(setting(row, "inference_precision")),
        runtime=str(setting(row, "runtime", REFERENCE_RUNTIME)),
        device="cuda" if device == "auto" and gpu else ("cpu" if device == "auto" else device),
        batch_size=int(setting(row, "latency.batch_size")), seq_len=int(setting(row, "latency.seq_len")),
        threads=int(row.get(M.LATENCY_THREADS) or setting(row, "latency.threads", 1)),
        min_run_time=max(RETIME_MIN_RUN_TIME, float(setting(row, "latency.min_run_time"))),
        rounds=max(RETIME_MIN_ROUNDS, int(setting(row, "latency.rounds", 5))),
        max_spread=min(RETIME_MAX_SPREAD, float(setting(row, "latency.max_spread", 0.1))),
    )


def run_teacher_dir(run) -> str:
    """The fine-tuned teacher in the run directory's cache (pulled to this node for an object store)."""
    import json

    run.pull(TEACHER_FILE)
    teacher = json.loads(run.local_path(TEACHER_FILE).read_text())
    return str(Path(run.teacher_cache_dir()) / teacher["key"] / MODEL_DIR)


def _retimed_line(row: Mapping[str, Any]) -> str:
    searched, retimed = row.get(M.in_search(M.LATENCY_MS)), row.get(M.LATENCY_MS)
    note = "  (more than 10% off: flagged)" if is_flagged(row) else ""
    return f"  {row[TRIAL_ID]}: {float(searched):.3g} ms in the search, {float(retimed):.3g} ms quiet{note}"
