"""The front on the held-out test split: figures the search never selected on.

When a search ends (``search.evaluate_test``, on by default), and on ``prunetune report
RUN_DIR --evaluate-test``, every trial on the front and the teacher are evaluated once on the
test split, each trial in a Ray task sized like a trial, served as it was measured. The
headline metric and its drop on test, with their 95% paired-bootstrap intervals, land in
results.parquet as ``*_test`` columns, written after each trial, so that a search stopped
here continues where it stopped. Selection stays on the evaluation split: these columns
only say how much of the front's quality holds on data it was not chosen on.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from prunetune import metrics as M
from prunetune.names import MODEL_DIR, RESULT_FILE, RESULTS_FILE, TRIAL_ID, TRIALS_DIR
from prunetune.pareto import nondominated_mask
from prunetune.search._results import read_rows, write_results
from prunetune.search._retime import finished_rows, run_teacher_dir

#: ``fn(request) -> columns``: ``prunetune.trainables.measure.held_out.evaluate_held_out`` unless a test says otherwise.
HeldOutFunction = Callable[[Any], dict[str, Any]]


def held_out_candidates(rows: Sequence[Mapping[str, Any]], objectives: Mapping[str, str], *, kind: str) -> list[str]:
    """The trials on the front (of the figures in ``rows``) not yet evaluated on the test split."""
    finished = finished_rows(rows, objectives)
    if not finished:
        return []
    import numpy as np

    values = np.array([[float(row[key]) for key in objectives] for row in finished], dtype=float)
    on_front = nondominated_mask(values, list(objectives.values()))
    done = M.held_out_key(M.headline_metric(kind))
    return [str(row[TRIAL_ID]) for row, front in zip(finished, on_front) if front and not _present(row.get(done))]


def evaluate_run_on_test(run, *, config, held_out_fn: HeldOutFunction | None = None,
                         say: Callable[[str], None] = lambda text: None) -> list[str]:
    """Evaluate ``run``'s front (a RunDir searched with ``config``) on the test split; the trial ids done."""
    if config.task.eval_split == M.HELD_OUT_SPLIT:
        say(f"no held-out evaluation: task.eval_split = {M.HELD_OUT_SPLIT!r}, so the search ranked on the test split "
            "itself; set task.eval_split: validation to keep it unseen")
        return []
    path = run.local_path(RESULTS_FILE)
    todo = held_out_candidates(read_rows(path), config.search.objectives, kind=config.task.kind)
    if not todo:
        return []
    say(f"evaluating {len(todo)} front trial(s) and the teacher once on the held-out {M.HELD_OUT_SPLIT} split")
    evaluate = _trial_sized_task(held_out_fn, config)
    teacher_dir = run_teacher_dir(run)
    done = []
    for trial_id in todo:
        try:
            figures = evaluate(_request(run, trial_id, teacher_dir, config))
        except Exception as error:  # one trial's files may be gone: the others are still worth evaluating
            say(f"  {trial_id}: not evaluated on {M.HELD_OUT_SPLIT}: {_reason(error)}")
            continue
        rows = {str(row[TRIAL_ID]): row for row in read_rows(path)}
        rows[trial_id] = {**rows[trial_id], **{key: float(value) for key, value in figures.items()}}
        write_results(rows.values(), path)
        run.push(RESULTS_FILE)
        done.append(trial_id)
        say(_held_out_line(rows[trial_id], config.task.kind))
    return done


def _request(run, trial_id: str, teacher_dir: str, config):
    from prunetune.trainables.measure.held_out import HeldOutRequest

    run.pull(TRIALS_DIR, trial_id, MODEL_DIR)
    run.pull(TRIALS_DIR, trial_id, RESULT_FILE)
    device = "cuda" if config.cluster.gpus_per_trial > 0 and config.trial.device == "auto" else config.trial.device
    return HeldOutRequest(trial_id=trial_id, trial_dir=str(run.local_path(TRIALS_DIR, trial_id)),
                          teacher_dir=teacher_dir, device="cpu" if device == "auto" else device)


def _trial_sized_task(held_out_fn: HeldOutFunction | None, config) -> HeldOutFunction:
    """``request -> columns`` through a Ray task with a trial's resources (a GPU when trials had one)."""
    import ray

    cluster = config.cluster
    options = {"num_cpus": cluster.cpus_per_trial, "num_gpus": min(1.0, cluster.gpus_per_trial)}
    task = ray.remote(_held_out_task).options(**options)
    return lambda request: ray.get(task.remote(held_out_fn, request))


def _held_out_task(held_out_fn: HeldOutFunction | None, request) -> dict[str, Any]:
    """The body of the task: torch is imported only here."""
    if held_out_fn is None:
        from prunetune.trainables.measure.held_out import evaluate_held_out as held_out_fn
    return held_out_fn(request)


def _held_out_line(row: Mapping[str, Any], kind: str) -> str:
    headline = M.headline_metric(kind)
    drop = M.drop_key(headline)
    low, high = (row.get(key) for key in M.interval_keys(M.held_out_key(drop)))
    return (f"  {row[TRIAL_ID]}: {drop} {float(row[drop]):+.4f} on validation, "
            f"{float(row[M.held_out_key(drop)]):+.4f} on {M.HELD_OUT_SPLIT} (95% interval {low:+.4f} to {high:+.4f})")


def _reason(error: BaseException) -> str:
    """The task's own error, without Ray's wrapping traceback."""
    cause = getattr(error, "cause", None)
    return f"{type(cause or error).__name__}: {cause or error}"


def _present(value: Any) -> bool:
    try:
        return float(value) == float(value)
    except (TypeError, ValueError):
        return False
