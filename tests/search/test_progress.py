"""The terminal view: counts, best value per objective, front size, failure reasons."""

from __future__ import annotations

import io
from types import SimpleNamespace

from prunetune.search import ProgressCallback

OBJECTIVES = {"accuracy": "max", "latency_ms": "min"}


def trial(trial_id: str, **result):
    return SimpleNamespace(trial_id=trial_id, config={"trial.sparsity": 0.5}, last_result=result,
                           pickled_error_file=None, error_file=None, get_pickled_error=lambda: None)


def test_progress_lines():
    stream = io.StringIO()
    progress = ProgressCallback(OBJECTIVES, num_trials=4, stream=stream)
    a, b, c = trial("a", accuracy=0.9, latency_ms=5.0), trial("b", accuracy=0.8, latency_ms=3.0), trial("c")
    for t in (a, b, c):
        progress.on_trial_start(0, [], t)
    progress.on_trial_complete(0, [], a)
    progress.on_trial_complete(0, [], b)
    progress.on_trial_error(0, [], c)
    lines = stream.getvalue().splitlines()
    assert lines[0].startswith("[ 0/4]  done 0  running 1  failed 0") and "started a sparsity=0.500" in lines[0]
    last = lines[-1]
    assert last.startswith("[ 3/4]  done 2  running 0  failed 1")
    assert "accuracy 0.900 ↑" in last and "latency_ms 3.000 ↓" in last and "front 2" in last
    assert last.endswith("(failed c: unknown error)")


def test_a_dominated_trial_leaves_the_front_and_rows_from_before_a_resume_count():
    initial = [{"trial_id": "old", "status": "TERMINATED", "accuracy": 0.95, "latency_ms": 2.0},
               {"trial_id": "bad", "status": "ERROR", "accuracy": None, "latency_ms": None}]
    progress = ProgressCallback(OBJECTIVES, num_trials=4, verbosity=0, initial=initial)
    progress.on_trial_complete(0, [], trial("new", accuracy=0.9, latency_ms=3.0))
    assert progress.front_size() == 1
    assert progress.summary().startswith("[ 3/4]  done 2  running 0  failed 1")


def test_quiet_prints_nothing(capsys):
    progress = ProgressCallback(OBJECTIVES, num_trials=1, verbosity=0)
    progress.on_trial_start(0, [], trial("a"))
    assert capsys.readouterr().out == ""


def test_a_trial_whose_worker_died_says_so_and_its_own_errors_read_as_raised():
    from ray.exceptions import ActorDiedError, RayTaskError

    from prunetune.search._results import WORKER_LOST, error_reason

    def failed(error):
        return SimpleNamespace(trial_id="t", pickled_error_file=None, error_file=None,
                               get_pickled_error=lambda: error)

    lost = error_reason(failed(ActorDiedError()))
    assert lost.startswith(f"{WORKER_LOST}: ActorDiedError:"), lost
    own = RayTaskError("train", "Traceback ...", ValueError("trial.sparsity = 1.5"))
    assert error_reason(failed(own)) == "ValueError: trial.sparsity = 1.5"
