"""Names shared by a writer and a reader: the run directory's files and the results table's columns.

The search writes them, the trials write their own directories, the analysis and the CLI
read them: each name is spelled here once.
"""

from __future__ import annotations

# --------------------------------------------------------------------------- the run directory

CONFIG_FILE = "config.yaml"  # the resolved configuration
STARTED_CONFIG_FILE = ".config.started.json"  # config.yaml as the search started (JSON), for --resume to compare
STUDY_FILE = "study.db"  # the Optuna study (SQLite default)
TUNE_DIR = "tune"  # the Ray Tune experiment
TEACHER_DIR = "teacher"  # the fine-tuned teacher cache of this run
TEACHER_FILE = "teacher.json"  # the teacher's baseline metrics and where it is
RESULTS_FILE = "results.parquet"  # one row per finished trial
PARETO_FILE = "pareto.parquet"  # the non-dominated rows
PLOTS_DIR = "plots"
EXPORTS_DIR = "exports"
WANDB_DIR = "wandb"
TRIALS_DIR = "trials"  # one directory per trial, named by its Tune trial id
LOCK_FILE = ".search.lock"  # held by the one search working in the run directory
LOCK_OWNER_FILE = ".search.owner"  # who holds it (host, process, since when)
SCHEDULER_FILE = "scheduler.json"  # the rungs of an early-stopping scheduler and its decisions
BUDGET_FILE = "budget.json"  # search.time_budget: the time spent so far, kept for --resume
ENERGY_FILE = "energy.json"  # each node's energy over the search, beside the trials' shares of it

# --------------------------------------------------------------------------- a trial's directory

RESULT_FILE = "result.json"  # final metrics and the trial's configuration
MODEL_DIR = "model"  # the compacted model (a Hugging Face model directory)
CHECKPOINT_DIR = "checkpoint"  # what a resumed trial restarts from
CHECKPOINT_STATE = "state.json"  # a checkpoint's progress (JSON): a checkpoint without it is incomplete

# --------------------------------------------------------------------------- a sampled point

#: Keys Tune hands a trial beside its ``trial.*`` values when a resume runs it on: the trial's
#: id (its directory and row) and where its last checkpoint lies. Not trial settings.
RESUMED_TRIAL = "resume.trial_id"
RESUMED_CHECKPOINT = "resume.checkpoint"

# --------------------------------------------------------------------------- results.parquet columns

TRIAL_ID = "trial_id"
STATUS = "status"
ERROR = "error"
STARTED_AT = "started_at"
FINISHED_AT = "finished_at"
WALL_SECONDS = "wall_seconds"
NODE_ID = "node_id"
TRIAL_DIR = "trial_dir"
#: Values of the status column: ran to its end, failed, stopped early by the scheduler.
TERMINATED, ERRORED, STOPPED = "TERMINATED", "ERROR", "STOPPED"
#: Columns of the trial's configuration are its dotted keys: ``trial.sparsity``, ...
CONFIG_PREFIX = "trial."
#: A trial's reports carry its validated ``trial.*`` values (JSON) once the worker has validated
#: them: what results.parquet records, threads the worker chose included.
TRIAL_SETTINGS = "trial_settings"

# --------------------------------------------------------------------------- the Optuna study

#: Trial user attr of a COMPLETE copy: the number of the FAIL trial (its worker was lost) whose
#: outcome, reached by a resume, the copy records (Optuna never changes a finished trial).
RESUMED_FROM_TRIAL_ATTR = "resumed_from_trial"
