"""Look at a search's results, pick a configuration and export it.

``load_run`` reads a run directory; ``analyse`` gives its Pareto front, hypervolume and
knee; ``summarize_run`` writes ``pareto.parquet`` and ``plots/``, logs the W&B summary run
and prints the front; ``pick_trial`` chooses under constraints; ``export_trial`` writes a
ready-to-serve model directory.

Importing this package imports neither torch, transformers, wandb nor matplotlib: the
modules that need them import them inside their functions.
"""

from prunetune.analysis.export import ExportResult, export_trial
from prunetune.analysis.front import (
    REFERENCE_POINT,
    FrontAnalysis,
    analyse,
    hypervolume,
    knee_index,
)
from prunetune.analysis.pick import (
    PREFERENCES,
    Constraint,
    Pick,
    explain,
    parse_constraints,
    pick_trial,
)
from prunetune.analysis.report import RunSummary, print_summary, summarize_run
from prunetune.analysis.runs import RunData, TeacherReference, load_run
from prunetune.analysis.wandb_settings import WandbSettings, wandb_settings

__all__ = [
    "PREFERENCES",
    "REFERENCE_POINT",
    "Constraint",
    "ExportResult",
    "FrontAnalysis",
    "Pick",
    "RunData",
    "RunSummary",
    "TeacherReference",
    "WandbSettings",
    "analyse",
    "explain",
    "export_trial",
    "hypervolume",
    "knee_index",
    "load_run",
    "parse_constraints",
    "pick_trial",
    "print_summary",
    "summarize_run",
    "wandb_settings",
]
