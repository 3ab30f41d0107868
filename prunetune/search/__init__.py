"""The search: Ray Tune trials, Optuna's multi-objective samplers, results as they finish.

- :func:`run_search` / :func:`resume_search`: the driver (``prunetune search``), which
  re-times the front quietly when the trials are done (:func:`retime_search` on its own), then
  evaluates it on the held-out test split (:func:`evaluate_test_search` on its own);
- :class:`ParetoOptunaSearch` and :func:`make_sampler`: Optuna under Tune, with failures
  and limits told to the sampler as constraints;
- :class:`ResultsCallback`: ``results.parquet``, one row per finished trial;
- :class:`RungScheduler` and :func:`make_scheduler`: ASHA and multi-objective ASHA as a Tune
  scheduler, over the :class:`RungLadder` that :mod:`prunetune.search.replay` also drives;
- :class:`ProgressCallback`: the terminal view;
- :mod:`prunetune.search.synthetic`: a model-free trial for tests and benchmarks.
"""

from prunetune.search._driver import (
    SearchOutcome,
    evaluate_test_search,
    resume_search,
    retime_search,
    run_search,
    saved_config,
    search_problems,
)
from prunetune.search._optuna import (
    ParetoOptunaSearch,
    constraint_values,
    make_sampler,
    redact_url,
)
from prunetune.search._progress import ProgressCallback
from prunetune.search._results import RESULTS_FILE, ResultsCallback, results_schema
from prunetune.search.rungs import RungLadder
from prunetune.search.scheduler import RungScheduler, make_scheduler

__all__ = [
    "RESULTS_FILE",
    "ParetoOptunaSearch",
    "ProgressCallback",
    "ResultsCallback",
    "RungLadder",
    "RungScheduler",
    "SearchOutcome",
    "constraint_values",
    "evaluate_test_search",
    "make_sampler",
    "make_scheduler",
    "redact_url",
    "resume_search",
    "results_schema",
    "retime_search",
    "run_search",
    "saved_config",
    "search_problems",
]
