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

#: What each key means (DESIGN.md's table); also used for table headers and help text.
METRIC_DESCRIPTIONS: dict[str, str] = {
    ACCURACY: "accuracy on the evaluation split, after compaction",
    F1_MACRO: "macro-F1 on the evaluation split",
    ACCURACY_DROP: "teacher accuracy minus student accuracy",
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

#: Every key a final trial report must carry.
FINAL_METRIC_KEYS: tuple[str, ...] = tuple(METRIC_DESCRIPTIONS)

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
}

DEFAULT_OBJECTIVES: dict[str, Direction] = {ACCURACY: "max", LATENCY_MS: "min", EMISSIONS_KG: "min"}

# The dense teacher, measured in each trial's own process beside its student.
TEACHER_ACCURACY = "teacher_accuracy"
TEACHER_LATENCY_MS = "teacher_latency_ms"
#: The dense teacher in the student's runtime and precision (the denominator of speedup_same_runtime).
TEACHER_RUNTIME_LATENCY_MS = "teacher_runtime_latency_ms"
TEACHER_KEYS: tuple[str, ...] = (TEACHER_ACCURACY, TEACHER_LATENCY_MS, TEACHER_RUNTIME_LATENCY_MS)

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
OPTIONAL_METRICS: dict[str, str] = {
    FILLED_WEIGHTS: "weights re-initialised inside live structure before the filled fine-tuning",
    FILL_SECONDS: "seconds of the filled fine-tuning (inside train_seconds)",
    SPARSE24_LAYERS: "linear maps served with 2:4 semi-structured sparsity",
    LATENCY_SPREAD: "interquartile range of the latency's alternating rounds over their median",
    LATENCY_NOISY: "1 when the latency's spread stayed above trial.latency.max_spread",
    ENERGY_ESTIMATED: "1 when the energy is estimated (CPU power from TDP) rather than read from counters",
    PREDICTED_SPEEDUP: "speedup_same_runtime the latency table predicted for the final structure "
                       "(trial.target_speedup)",
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

#: ``search.constraints`` names -> the metric each one bounds from above.
CONSTRAINT_METRICS: dict[str, str] = {
    "max_accuracy_drop": ACCURACY_DROP,
    "max_latency_ms": LATENCY_MS,
    "max_emissions_kg": EMISSIONS_KG,
}

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
#: Seconds an intermediate report spent projecting the objectives (compaction and timing of a copy).
PROJECTION_SECONDS = "projection_seconds"
#: Results column: the step at which a scheduler stopped the trial (null for a trial that ran to its end).
STOPPED_AT_STEP = "stopped_at_step"


def missing_final_keys(report: dict) -> list[str]:
    """Contract keys absent from ``report`` (empty when the report is complete)."""
    return [key for key in FINAL_METRIC_KEYS if key not in report]


def stopped_at(result: dict | None) -> int | None:
    """The step of a trial's last report when that report is an intermediate one (a scheduler
    stopped the trial there), else None: a finished or failed trial ends with a final report."""
    if not result or result.get(FAILED) or result.get(STEP) is None or not missing_final_keys(result):
        return None
    return int(result[STEP])
