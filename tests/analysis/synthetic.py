"""Synthetic run directories: what a search writes, made in a test's tmp_path."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from prunetune import metrics as M
from prunetune.analysis import runs as R

OBJECTIVES = {M.ACCURACY: "max", M.LATENCY_MS: "min", M.EMISSIONS_KG: "min"}
TEACHER = {
    "model_dir": "teacher/model", "key": "abc123", M.ACCURACY: 0.95, M.F1_MACRO: 0.949,
    M.LATENCY_MS: 12.0, M.LATENCY_P95_MS: 13.0, M.PARAMS: 22_000_000, M.EMISSIONS_KG: 2.0e-4,
    "energy_kwh": 5.0e-4, M.TRAIN_SECONDS: 300.0,
}


def run_config(objectives=None, constraints=None, wandb=None) -> dict:
    return {
        "task": {"dataset": "bbc_news", "seed": 0},
        "teacher": {"model": "minilm-l6", "epochs": 2},
        "trial": {"method": "movement", "sparsity": 0.5, "block_size": 32, "precision": "fp32",
                  "latency": {"batch_size": 1, "seq_len": 64}},
        "space": {"trial.sparsity": {"uniform": [0.0, 0.9]}, "trial.block_size": {"choice": [16, 32]},
                  "trial.precision": {"choice": ["fp32", "bf16"]}},
        "search": {"sampler": "nsga2", "num_trials": 12, "objectives": objectives or dict(OBJECTIVES),
                   "constraints": constraints if constraints is not None else {"max_accuracy_drop": 0.05}},
        "cluster": {"address": None},
        "output": {"dir": "runs/test",
                   "wandb": wandb or {"enabled": True, "project": "prunetune-test", "mode": "offline"}},
    }


def trial_row(trial_id: str, *, accuracy: float, latency_ms: float, emissions_kg: float, sparsity: float = 0.5,
              block_size: int = 32, precision: str = "fp32", finished_at: float = 0.0, teacher_latency_ms: float = 12.0,
              run_dir: Path | None = None) -> dict:
    metrics = {
        M.ACCURACY: accuracy, M.F1_MACRO: accuracy - 0.01, M.ACCURACY_DROP: TEACHER[M.ACCURACY] - accuracy,
        M.LATENCY_MS: latency_ms, M.LATENCY_P95_MS: latency_ms * 1.1, M.SPEEDUP: teacher_latency_ms / latency_ms,
        M.SPEEDUP_SAME_RUNTIME: teacher_latency_ms / latency_ms,
        M.EMISSIONS_KG: emissions_kg, M.ENERGY_KWH: emissions_kg * 2.5, M.PARAMS: int(22e6 * (1 - sparsity * 0.6)),
        M.SPARSITY: sparsity, M.HEADS_PRUNED: int(72 * sparsity * 0.5), M.FFN_KEPT: 1 - sparsity * 0.5,
        M.TRAIN_SECONDS: 60.0, M.LATENCY_THREADS: 1,
    }
    return {
        R.TRIAL_ID: trial_id, R.STATUS: R.TERMINATED, R.ERROR: None, R.STARTED_AT: finished_at - 60,
        R.FINISHED_AT: finished_at, R.WALL_SECONDS: 60.0, R.NODE_ID: "node-1",
        R.TRIAL_DIR: str((run_dir or Path(".")) / R.TRIALS_DIR / trial_id),
        "trial.method": "movement", "trial.sparsity": sparsity, "trial.block_size": block_size,
        "trial.precision": precision, "trial.latency.batch_size": 1, "trial.latency.seq_len": 64,
        **metrics, R.TEACHER_ACCURACY: TEACHER[M.ACCURACY], R.TEACHER_LATENCY_MS: teacher_latency_ms,
    }


def error_row(trial_id: str, *, finished_at: float = 0.0, run_dir: Path | None = None) -> dict:
    row = trial_row(trial_id, accuracy=0.0, latency_ms=1.0, emissions_kg=0.0, finished_at=finished_at, run_dir=run_dir)
    for key in (*M.FINAL_METRIC_KEYS, R.TEACHER_ACCURACY, R.TEACHER_LATENCY_MS):
        row[key] = None
    row.update({R.STATUS: R.ERRORED, R.ERROR: "TrialError: loss diverged (nan) at step 40"})
    return row


def write_run(run_dir: Path, rows: list[dict], config: dict | None = None, teacher: dict | None = None) -> Path:
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / R.CONFIG_FILE).write_text(yaml.safe_dump(config or run_config(), sort_keys=False))
    (run_dir / R.TEACHER_FILE).write_text(json.dumps(teacher or TEACHER))
    if rows:
        pd.DataFrame(rows).to_parquet(run_dir / R.RESULTS_FILE)
    return run_dir


def realistic_rows(run_dir: Path, n: int = 24, seed: int = 0) -> list[dict]:
    """A plausible search: more sparsity -> faster, cheaper, less accurate, with noise."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        sparsity = float(rng.uniform(0.0, 0.9))
        precision = str(rng.choice(["fp32", "bf16"]))
        accuracy = 0.95 - 0.2 * sparsity**3 - rng.uniform(0, 0.03) - (0.005 if precision == "bf16" else 0)
        latency = 12.0 * (1 - 0.7 * sparsity) * rng.uniform(0.95, 1.15)
        emissions = 4e-5 * (1 + rng.uniform(0, 0.8)) * (0.8 if precision == "bf16" else 1.0)
        rows.append(trial_row(f"t{i:03d}", accuracy=round(accuracy, 4), latency_ms=latency, emissions_kg=emissions,
                              sparsity=round(sparsity, 3), block_size=int(rng.choice([16, 32])), precision=precision,
                              finished_at=1000.0 + 60 * i, teacher_latency_ms=12.0 * rng.uniform(0.97, 1.03),
                              run_dir=run_dir))
    rows.insert(5, error_row("t_err", finished_at=1000.0 + 60 * 5 + 1, run_dir=run_dir))
    return rows
