"""The trial metric contract: every key a finished trial reports, declared once.

The trainable, the search and the analysis all import these names; nothing else spells
a metric key as a string literal.
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

#: What each key means (DESIGN.md's table); also used for table headers and help text.
METRIC_DESCRIPTIONS: dict[str, str] = {
    ACCURACY: "accuracy on the evaluation split, after compaction",
    F1_MACRO: "macro-F1 on the evaluation split",
    ACCURACY_DROP: "teacher accuracy minus student accuracy",
    LATENCY_MS: "median latency of one forward pass (batch, seq len, device, inference precision)",
    LATENCY_P95_MS: "95th percentile of the same latency",
    SPEEDUP: "dense teacher latency / student latency, measured in the same process",
    EMISSIONS_KG: "CO2-equivalent of the trial's training and evaluation (CodeCarbon, offline)",
    ENERGY_KWH: "energy behind emissions_kg",
    PARAMS: "parameters of the compacted model",
    SPARSITY: "fraction of the prunable encoder weights that are zero or removed",
    HEADS_PRUNED: "attention heads removed by compaction",
    FFN_KEPT: "fraction of FFN neurons kept after compaction",
    TRAIN_SECONDS: "wall time of the trial's training",
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
}

DEFAULT_OBJECTIVES: dict[str, Direction] = {ACCURACY: "max", LATENCY_MS: "min", EMISSIONS_KG: "min"}

# Keys of intermediate reports (during training), and bookkeeping keys of every report.
STEP = "step"
TRAIN_LOSS = "train_loss"
CURRENT_SPARSITY = "current_sparsity"
DONE = "done"
ERROR = "error"


def missing_final_keys(report: dict) -> list[str]:
    """Contract keys absent from ``report`` (empty when the report is complete)."""
    return [key for key in FINAL_METRIC_KEYS if key not in report]
