"""The trial metric contract: every key a finished trial reports, declared once.

The trainable, the search and the analysis all import these names (and their meanings,
directions, labels, formats and the constraints on them); nothing else spells a metric
key as a string literal.
"""

from __future__ import annotations

from typing import Literal

Direction = Literal["max", "min"]

ACCURACY = "accuracy"
F1_MACRO = "f1_macro"
ACCURACY_DROP = "accuracy_drop"
LATENCY_MS = "latency_ms"
LATENCY_P95_MS = "latency_p95_ms"
SPEEDUP = "speedup"
EMISSIONS_KG = "emissions_kg"
ENERGY_KWH = "energy_kwh"
PARAMS = "params"
SPARSITY = "sparsity"
HEADS_PRUNED = "heads_pruned"
FFN_KEPT = "ffn_kept"
TRAIN_SECONDS = "train_seconds"
LATENCY_THREADS = "latency_threads"
SPEEDUP_SAME_RUNTIME = "speedup_same_runtime"

# Task metrics beyond classification's (each task kind names its own; see TASK_METRICS).
PEARSON = "pearson"
SPEARMAN = "spearman"
MSE = "mse"
F1 = "f1"
PRECISION = "precision"
RECALL = "recall"
EXACT_MATCH = "exact_match"

#: Task kind -> the quality metrics its trials report, headline first. The kinds themselves
#: (columns, encoding, heads, losses) are plug-ins in ``prunetune.trainables.tasks``.
TASK_METRICS: dict[str, tuple[str, ...]] = {
    "classification": (ACCURACY, F1_MACRO),
    "regression": (PEARSON, SPEARMAN, MSE),
    "token_classification": (F1, PRECISION, RECALL, ACCURACY),
    "question_answering": (F1, EXACT_MATCH),
}
DEFAULT_TASK_KIND = "classification"

#: What each task metric means, per kind (``f1`` and ``accuracy`` mean different things per kind).
TASK_METRIC_DESCRIPTIONS: dict[str, dict[str, str]] = {
    "classification": {ACCURACY: "accuracy on the evaluation split, after compaction",
                       F1_MACRO: "macro-F1 on the evaluation split"},
    "regression": {PEARSON: "Pearson correlation of predicted and true scores on the evaluation split",
                   SPEARMAN: "Spearman rank correlation of the same", MSE: "mean squared error of the same"},
    "token_classification": {F1: "entity-level F1 (an entity counts when its span and type are both right)",
                             PRECISION: "entity-level precision", RECALL: "entity-level recall",
                             ACCURACY: "word-level tag accuracy"},
    "question_answering": {F1: "SQuAD token-overlap F1 of the best span over the document's windows",
                           EXACT_MATCH: "SQuAD exact match of the same span (after normalisation)"},
}


def headline_metric(kind: str) -> str:
    """The metric a task kind is judged by (the first it reports)."""
    return TASK_METRICS[kind][0]


def drop_key(metric: str) -> str:
    """``accuracy`` -> ``accuracy_drop``: how much worse the student is than the teacher."""
    return f"{metric}_drop"


def teacher_key(metric: str) -> str:
    """``pearson`` -> ``teacher_pearson``: the dense teacher's figure, in each trial's report."""
    return f"teacher_{metric}"


#: Metrics that improve when they fall (every other task metric improves when it rises).
_LOWER_IS_BETTER: frozenset[str] = frozenset({MSE})


def quality_drop(metric: str, teacher: float, student: float) -> float:
    """How much worse the student is on ``metric``: teacher - student, or student - teacher for a
    metric that improves when it falls (mse), so that a drop is always 'lower is better'."""
    return student - teacher if metric in _LOWER_IS_BETTER else teacher - student


def task_metric_keys(kind: str) -> tuple[str, ...]:
    """A kind's quality metrics and their drops (what its final reports carry besides the core)."""
    metrics = TASK_METRICS[kind]
    return (*metrics, *(drop_key(m) for m in metrics))


#: The keys every final report carries whatever its task kind (DESIGN.md's table, less quality).
CORE_METRIC_DESCRIPTIONS: dict[str, str] = {
    LATENCY_MS: "median latency of one forward pass (batch, seq len, device, inference precision)",
    LATENCY_P95_MS: "95th percentile of the same latency",
    SPEEDUP: "dense fp32 teacher in PyTorch eager / student in its runtime and precision, timed in alternating "
             "rounds in the same process",
    EMISSIONS_KG: "CO2-equivalent of the trial's training and evaluation (CodeCarbon, offline)",
    ENERGY_KWH: "energy behind emissions_kg",
    PARAMS: "parameters of the compacted model",
    SPARSITY: "fraction of the prunable encoder weights that are zero or removed",
    HEADS_PRUNED: "attention heads removed by compaction",
    FFN_KEPT: "fraction of FFN neurons kept after compaction",
    TRAIN_SECONDS: "wall time of the trial's training",
    LATENCY_THREADS: "CPU threads the latency was measured with",
    SPEEDUP_SAME_RUNTIME: "dense teacher in the student's runtime and precision / student: what pruning bought",
}


def _describe_task_keys() -> dict[str, str]:
    described: dict[str, str] = {}
    for kind, meanings in TASK_METRIC_DESCRIPTIONS.items():
        for metric in TASK_METRICS[kind]:
            described.setdefault(metric, meanings[metric])
            described.setdefault(drop_key(metric), f"teacher minus student {metric}"
                                 if metric not in _LOWER_IS_BETTER else f"student minus teacher {metric}")
    return described


#: What each key means (DESIGN.md's table); also used for table headers and help text. Quality
#: keys of every kind come first (classification's as before), then the core.
METRIC_DESCRIPTIONS: dict[str, str] = {
    ACCURACY: "accuracy on the evaluation split, after compaction",
    F1_MACRO: "macro-F1 on the evaluation split",
    ACCURACY_DROP: "teacher accuracy minus student accuracy",
    **CORE_METRIC_DESCRIPTIONS,
    **{key: meaning for key, meaning in _describe_task_keys().items() if key not in (ACCURACY, F1_MACRO, ACCURACY_DROP)},
}

def final_metric_keys(kind: str) -> tuple[str, ...]:
    """The keys a final report of a trial of ``kind`` must carry (the contract): the kind's metrics,
    its headline metric's drop, and the core. Trials report the drop of every other metric too."""
    return (*TASK_METRICS[kind], drop_key(headline_metric(kind)), *CORE_METRIC_DESCRIPTIONS)


#: The contract of a classification trial (the default kind): DESIGN.md's table.
FINAL_METRIC_KEYS: tuple[str, ...] = tuple(dict.fromkeys(
    [ACCURACY, F1_MACRO, ACCURACY_DROP, *CORE_METRIC_DESCRIPTIONS]))
#: Every metric key some final report carries, over every kind: the results table's columns.
ALL_METRIC_KEYS: tuple[str, ...] = tuple(METRIC_DESCRIPTIONS)


#: The direction in which each metric improves; objectives must be one of these keys.
METRIC_DIRECTIONS: dict[str, Direction] = {
    ACCURACY: "max",
    F1_MACRO: "max",
    ACCURACY_DROP: "min",
    LATENCY_MS: "min",
    LATENCY_P95_MS: "min",
    SPEEDUP: "max",
    EMISSIONS_KG: "min",
    ENERGY_KWH: "min",
    PARAMS: "min",
    SPARSITY: "max",
    HEADS_PRUNED: "max",
    FFN_KEPT: "min",
    TRAIN_SECONDS: "min",
    LATENCY_THREADS: "min",
    SPEEDUP_SAME_RUNTIME: "max",
    **{metric: ("min" if metric in _LOWER_IS_BETTER else "max") for kind in TASK_METRICS for metric in TASK_METRICS[kind]},
    **{drop_key(metric): "min" for kind in TASK_METRICS for metric in TASK_METRICS[kind]},
}


def default_objectives(kind: str = DEFAULT_TASK_KIND) -> dict[str, Direction]:
    """The task's headline metric, latency and emissions."""
    return {headline_metric(kind): "max" if headline_metric(kind) not in _LOWER_IS_BETTER else "min",
            LATENCY_MS: "min", EMISSIONS_KG: "min"}


def kind_of_report(report: dict) -> str:
    """The task kind whose quality metrics a report carries (classification when none match)."""
    matching = [kind for kind, metrics in TASK_METRICS.items() if all(m in report for m in metrics)]
    return max(matching, key=lambda kind: len(TASK_METRICS[kind]), default=DEFAULT_TASK_KIND)


DEFAULT_OBJECTIVES: dict[str, Direction] = default_objectives()

# The dense teacher, measured in each trial's own process beside its student.
TEACHER_ACCURACY = "teacher_accuracy"
TEACHER_LATENCY_MS = "teacher_latency_ms"
#: The dense teacher in the student's runtime and precision (the denominator of speedup_same_runtime).
TEACHER_RUNTIME_LATENCY_MS = "teacher_runtime_latency_ms"
TEACHER_KEYS: tuple[str, ...] = (
    TEACHER_ACCURACY, TEACHER_LATENCY_MS, TEACHER_RUNTIME_LATENCY_MS,
    *dict.fromkeys(teacher_key(m) for kind in TASK_METRICS for m in TASK_METRICS[kind] if m != ACCURACY))

# Per-layer structure of the compacted model (lists: in result.json, not in results.parquet).
LAYER_HEADS = "layer_heads"
LAYER_FFN = "layer_ffn"

# Metrics some trials add: filling ("hybrid filled") and 2:4 sparse serving. A method's own
# extra metrics are declared by the method (``prunetune.trainables.methods``).
FILLED_WEIGHTS = "filled_weights"
FILL_SECONDS = "fill_seconds"
SPARSE24_LAYERS = "sparse24_layers"
# How far a latency can be trusted: the spread of its alternating rounds, and whether it
# stayed wider than trial.latency.max_spread after every attempt.
LATENCY_SPREAD = "latency_spread"
LATENCY_NOISY = "latency_noisy"
# Energy: whether it is an estimate (CPU power from its TDP, no RAPL or NVML reading).
ENERGY_ESTIMATED = "energy_estimated"
# Pruning to a speed (trial.target_speedup): what the latency table predicted for the final structure.
PREDICTED_SPEEDUP = "predicted_speedup"
# Rungs ranked on the latency table (trial.rung_latency: table): its figure for the final structure,
# beside the measured latency_ms, shows how far the rungs' latencies were from the measured ones.
TABLE_LATENCY_MS = "table_latency_ms"
OPTIONAL_METRICS: dict[str, str] = {
    FILLED_WEIGHTS: "weights re-initialised inside live structure before the filled fine-tuning",
    FILL_SECONDS: "seconds of the filled fine-tuning (inside train_seconds)",
    SPARSE24_LAYERS: "linear maps served with 2:4 semi-structured sparsity",
    LATENCY_SPREAD: "interquartile range of the latency's alternating rounds over their median",
    LATENCY_NOISY: "1 when the latency's spread stayed above trial.latency.max_spread",
    ENERGY_ESTIMATED: "1 when the energy is estimated (CPU power from TDP) rather than read from counters",
    PREDICTED_SPEEDUP: "speedup_same_runtime the latency table predicted for the final structure "
                       "(trial.target_speedup)",
    TABLE_LATENCY_MS: "latency_ms the latency table predicts for the final structure: what the rungs ranked on "
                      "(trial.rung_latency: table)",
}

# How far a headline figure can be trusted: 95% paired-bootstrap intervals (``<key>_ci_low``,
# ``<key>_ci_high``) of the headline metric and its drop, on the evaluation split the search ranks
# on, and the same figures on the test split, which the search never sees (``<key>_test``):
# the best of many trials is biased upward on the split it was selected on; not on test.
CI_LOW_SUFFIX, CI_HIGH_SUFFIX = "_ci_low", "_ci_high"
TEST_SUFFIX = "_test"
#: The split no search ranks or selects on, and that the held-out figures come from.
HELD_OUT_SPLIT = "test"
#: Name of each trial's per-example statistics (validation and test), for paired comparisons.
EXAMPLE_SCORES_FILE = "example_scores.npz"


def interval_keys(key: str) -> tuple[str, str]:
    """``accuracy_drop`` -> (``accuracy_drop_ci_low``, ``accuracy_drop_ci_high``): its 95% interval."""
    return f"{key}{CI_LOW_SUFFIX}", f"{key}{CI_HIGH_SUFFIX}"


def held_out_key(key: str) -> str:
    """``accuracy`` -> ``accuracy_test``: the figure on the held-out test split."""
    return f"{key}{TEST_SUFFIX}"


def headline_interval_keys(kind: str) -> tuple[str, ...]:
    """The interval columns of a kind's headline metric and its drop, on the evaluation split."""
    headline = headline_metric(kind)
    return (*interval_keys(headline), *interval_keys(drop_key(headline)))


def held_out_keys(kind: str) -> tuple[str, ...]:
    """What the held-out evaluation adds for a kind: the headline and its drop on test, their
    intervals, and the teacher's headline on test."""
    headline = headline_metric(kind)
    figures = (held_out_key(headline), held_out_key(drop_key(headline)))
    return (*figures, *(key for figure in figures for key in interval_keys(figure)),
            held_out_key(teacher_key(headline)))


def _describe_uncertainty() -> dict[str, str]:
    described: dict[str, str] = {}
    for kind in TASK_METRICS:
        headline = headline_metric(kind)
        for key in (headline, drop_key(headline)):
            low, high = interval_keys(key)
            described.setdefault(low, f"lower end of the 95% paired-bootstrap interval of {key}")
            described.setdefault(high, f"upper end of the 95% paired-bootstrap interval of {key}")
            described.setdefault(held_out_key(key), f"{key} on the held-out test split (never ranked on: unbiased)")
            low, high = interval_keys(held_out_key(key))
            described.setdefault(low, f"lower end of the 95% interval of {held_out_key(key)}")
            described.setdefault(high, f"upper end of the 95% interval of {held_out_key(key)}")
        described.setdefault(held_out_key(teacher_key(headline)), f"the dense teacher's {headline} on the test split")
    return described


#: Interval and held-out columns of every kind's headline metric (float columns of results.parquet).
UNCERTAINTY_METRICS: dict[str, str] = _describe_uncertainty()

# Where a latency was measured, in words (string columns): the hardware, and the node's id when
# search.measure_on took the measurement to a deploy node.
LATENCY_HARDWARE = "latency_hardware"
LATENCY_NODE = "latency_node"
SOFTWARE = "software"
TEXT_METRICS: dict[str, str] = {
    LATENCY_HARDWARE: "the CPU model (and CPU count) or the GPU (and its memory) the latency was measured on",
    LATENCY_NODE: "the Ray node that measured the latency, with search.measure_on",
    SOFTWARE: "versions of torch, transformers, onnxruntime and the runtime's packages the figures were measured with",
}

# Re-timing after the search: the figures the front uses are the quiet re-timing's; the
# in-search figures keep their own columns, and a large gap between the two is flagged.
IN_SEARCH_SUFFIX = "_in_search"
RETIMED_METRICS: tuple[str, ...] = (LATENCY_MS, LATENCY_P95_MS, SPEEDUP, SPEEDUP_SAME_RUNTIME, TEACHER_LATENCY_MS,
                                    TEACHER_RUNTIME_LATENCY_MS, LATENCY_SPREAD, LATENCY_NOISY)
RETIMED = "retimed"
RETIME_RATIO = "retime_ratio"  # in-search latency / re-timed latency
RETIME_FLAG_RATIO = 1.10  # figures further apart than 10% are flagged in the report


def retime_flagged(ratio) -> bool:
    """Whether re-timing moved a latency by more than 10% either way (``ratio``: in-search / re-timed)."""
    try:
        ratio = float(ratio)
    except (TypeError, ValueError):
        return False
    return ratio == ratio and not 1 / RETIME_FLAG_RATIO <= ratio <= RETIME_FLAG_RATIO  # NaN: not flagged


def in_search(key: str) -> str:
    """The column that keeps the in-search figure of a re-timed metric."""
    return f"{key}{IN_SEARCH_SUFFIX}"

#: ``search.constraints`` names -> the metric each one bounds from above: the drop of every task
#: metric (``max_accuracy_drop``, ``max_f1_drop``, ...), latency and emissions. ``max_drop`` is the
#: drop of the task's headline metric (``search.constraints.max_drop``; see :func:`constraint_metric`).
CONSTRAINT_METRICS: dict[str, str] = {
    "max_accuracy_drop": ACCURACY_DROP,
    **{f"max_{drop_key(m)}": drop_key(m) for kind in TASK_METRICS for m in TASK_METRICS[kind]},
    "max_latency_ms": LATENCY_MS,
    "max_emissions_kg": EMISSIONS_KG,
}
#: The constraint on the drop of the task's headline metric, whatever the kind.
MAX_DROP = "max_drop"


def base_metric(key: str) -> str:
    """``accuracy_drop_test_ci_high`` -> ``accuracy_drop``: the metric a held-out or interval column is of."""
    for suffix in (CI_LOW_SUFFIX, CI_HIGH_SUFFIX, TEST_SUFFIX):
        key = key.removesuffix(suffix)
    return key


def constrained_column(name: str, *, drop_bound: str = "estimate") -> str:
    """The results column a ``search.constraints`` limit bounds: the metric, or for a drop with
    ``drop_bound: upper``, the upper end of its 95% interval (met only when the data rule out more)."""
    metric = CONSTRAINT_METRICS[name]
    is_drop = any(metric == drop_key(m) for kind in TASK_METRICS for m in TASK_METRICS[kind])
    return interval_keys(metric)[1] if drop_bound == "upper" and is_drop else metric


def constraint_metric(name: str, kind: str = DEFAULT_TASK_KIND) -> str:
    """The metric a ``search.constraints`` name bounds, for a task of ``kind``."""
    return drop_key(headline_metric(kind)) if name == MAX_DROP else CONSTRAINT_METRICS[name]

#: Human names with units, for axes and table headers.
METRIC_LABELS: dict[str, str] = {
    ACCURACY: "accuracy",
    F1_MACRO: "macro-F1",
    ACCURACY_DROP: "accuracy drop",
    LATENCY_MS: "latency (ms)",
    LATENCY_P95_MS: "p95 latency (ms)",
    SPEEDUP: "speed-up (x)",
    SPEEDUP_SAME_RUNTIME: "speed-up, same runtime (x)",
    EMISSIONS_KG: "emissions (kg CO2-eq)",
    ENERGY_KWH: "energy (kWh)",
    PARAMS: "parameters",
    SPARSITY: "sparsity",
    HEADS_PRUNED: "heads pruned",
    FFN_KEPT: "FFN kept",
    TRAIN_SECONDS: "training (s)",
}

#: Decimals shown per metric; counts print as integers, energy and emissions in scientific notation.
METRIC_DECIMALS: dict[str, int] = {
    ACCURACY: 4, F1_MACRO: 4, ACCURACY_DROP: 4, LATENCY_MS: 2, LATENCY_P95_MS: 2,
    SPEEDUP: 2, SPEEDUP_SAME_RUNTIME: 2, SPARSITY: 3, FFN_KEPT: 3, TRAIN_SECONDS: 1,
}
INTEGER_METRICS: tuple[str, ...] = (PARAMS, HEADS_PRUNED)
SCIENTIFIC_METRICS: tuple[str, ...] = (EMISSIONS_KG, ENERGY_KWH)

# Keys of intermediate reports (during training), and bookkeeping keys of every report.
STEP = "step"
TRAIN_LOSS = "train_loss"
CURRENT_SPARSITY = "current_sparsity"
DONE = "done"
ERROR = "error"
FAILED = "failed"  # a trial's configuration failed: its final report says why, and holds no objective


#: Objectives an intermediate report carries with ``trial.report_objectives``: what the trial
#: would score if it stopped there. Early-stopping schedulers rank trials on these only.
RUNG_METRICS: tuple[str, ...] = (ACCURACY, F1_MACRO, ACCURACY_DROP, LATENCY_MS, EMISSIONS_KG, ENERGY_KWH, PARAMS,
                                 SPARSITY)

#: The 95% intervals a rung report carries beside its figures (``search.scheduler: moasha-interval``
#: ranks on them): the headline metric's and its drop's.
RUNG_INTERVALS: tuple[str, ...] = (*interval_keys(ACCURACY), *interval_keys(ACCURACY_DROP))


def rung_metrics(kind: str = DEFAULT_TASK_KIND) -> tuple[str, ...]:
    """What an intermediate report of a trial of ``kind`` carries with ``trial.report_objectives``:
    the kind's metrics, their drops, and the projected costs."""
    costs = tuple(key for key in RUNG_METRICS if key not in (ACCURACY, F1_MACRO, ACCURACY_DROP))
    return (*task_metric_keys(kind), *costs) if kind != DEFAULT_TASK_KIND else RUNG_METRICS


#: Seconds an intermediate report spent projecting the objectives (compaction and timing of a copy).
PROJECTION_SECONDS = "projection_seconds"

# Where a trial's wall time goes (every report carries the split so far; train_seconds is the
# training itself). startup_seconds is measured by the driver: from Tune's start of the trial to
# the trial's first line of work (worker process, imports).
STARTUP_SECONDS = "startup_seconds"
DATA_SECONDS = "data_seconds"
TEACHER_SECONDS = "teacher_seconds"
BUILD_SECONDS = "build_seconds"
RUNG_SECONDS = "rung_seconds"
FINAL_SECONDS = "final_seconds"
TIME_SPLIT: dict[str, str] = {
    STARTUP_SECONDS: "from the trial's start in Tune to its first line of work: worker process, imports",
    DATA_SECONDS: "reading the task's data and tokenising it (the teacher's cached outputs included)",
    TEACHER_SECONDS: "the teacher: its cache, its weights copied into the student, the layer teacher",
    BUILD_SECONDS: "the method's pruner, the optimiser and a checkpoint to resume from",
    TRAIN_SECONDS: "the training steps",
    RUNG_SECONDS: "intermediate reports: evaluation, projected objectives, checkpoints",
    FINAL_SECONDS: "the end: compaction, serving, evaluation and the latency measurement",
}
#: How the progress lines name each part.
TIME_SPLIT_LABELS: dict[str, str] = {STARTUP_SECONDS: "startup", DATA_SECONDS: "data", TEACHER_SECONDS: "teacher",
                                     BUILD_SECONDS: "build", TRAIN_SECONDS: "training", RUNG_SECONDS: "rungs",
                                     FINAL_SECONDS: "final"}
#: Results column: the step at which a scheduler stopped the trial (null for a trial that ran to its end).
STOPPED_AT_STEP = "stopped_at_step"


def missing_final_keys(report: dict, kind: str | None = None) -> list[str]:
    """Contract keys absent from ``report`` (empty when the report is complete), for a task of
    ``kind`` (by default, the kind whose quality metrics the report carries)."""
    return [key for key in final_metric_keys(kind or kind_of_report(report)) if key not in report]


def stopped_at(result: dict | None) -> int | None:
    """The step of a trial's last report when that report is an intermediate one (a scheduler
    stopped the trial there), else None: a finished or failed trial ends with a final report."""
    if not result or result.get(FAILED) or result.get(STEP) is None or not missing_final_keys(result):
        return None
    return int(result[STEP])
