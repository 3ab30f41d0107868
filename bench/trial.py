"""Benchmark one trial per method on the default task (BBC News, MiniLM-L6 teacher).

Prints the dense teacher's accuracy and latency, then movement pruning with KD
(T=2, alpha=0.9, 32x32 blocks) at 25%, 50% and 75% sparsity and magnitude at 50%:
accuracy, accuracy drop, speedup, params, emissions and train seconds. The bar: at 50%
sparsity (batch 1, seq 128, fp32) the compacted student is >= 1.5x faster than the dense
teacher with an accuracy drop of at most 1 point.

    .venv/bin/python bench/trial.py [--steps 200] [--min-head-density 0.25] [--only movement-0.5]
                                    [--device auto] [--precision fp32]

Figures depend on the machine: run it where you will deploy.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from prunetune import config as config_module
from prunetune import metrics as M
from prunetune.trainables.training.teacher import prepare_teacher
from prunetune.trainables.trial import run_trial

RUNS = [("movement", 0.25), ("movement", 0.50), ("movement", 0.75), ("magnitude", 0.50)]
COLUMNS = [M.ACCURACY, M.ACCURACY_DROP, M.SPEEDUP, M.LATENCY_MS, M.PARAMS, M.SPARSITY, M.HEADS_PRUNED,
           M.FFN_KEPT, M.EMISSIONS_KG, M.TRAIN_SECONDS]


def bench_config(args) -> config_module.Config:
    """The full BBC News task at seq 128, nn_pruning's distillation settings."""
    return config_module.load("quickstart", [
        "task.max_length=128", "task.max_train_samples=null", "task.max_eval_samples=null",
        "teacher.epochs=2", "teacher.learning_rate=1e-4",
        f"trial.max_steps={args.steps}", "trial.batch_size=16", "trial.learning_rate=1e-4",
        "trial.block_size=32", "trial.temperature=2.0", "trial.alpha=0.9", f"trial.eval_every={args.steps}",
        f"trial.precision={args.precision}", f"trial.inference_precision={args.inference_precision}",
        f"trial.device={args.device}", f"trial.min_head_density={args.min_head_density}",
        "trial.latency.batch_size=1", "trial.latency.seq_len=128", "trial.latency.min_run_time=2.0",
    ])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--precision", default="fp32")
    parser.add_argument("--inference-precision", default="fp32")
    parser.add_argument("--min-head-density", type=float, default=0.25,
                        help="remove heads keeping less than this fraction of their blocks (0: plain top-k)")
    parser.add_argument("--only", choices=[f"{m}-{s}" for m, s in RUNS], action="append",
                        help="run only these points, e.g. --only movement-0.5")
    parser.add_argument("--out", type=Path, default=None, help="where trial outputs go (default: a temp dir)")
    args = parser.parse_args()
    config = bench_config(args)
    teacher = prepare_teacher(config, progress=True)
    out = args.out or Path(tempfile.mkdtemp(prefix="prunetune-bench-"))
    rows = []
    for method, sparsity in [r for r in RUNS if not args.only or f"{r[0]}-{r[1]}" in args.only]:
        trial_config = config.with_values({"trial.method": method, "trial.sparsity": sparsity})
        metrics = run_trial(trial_config, output_dir=out / f"{method}-{sparsity}", progress=True)
        rows.append((method, sparsity, metrics))
    print_table(teacher.baseline, rows)
    (out / "bench.json").write_text(json.dumps({"teacher": teacher.baseline, "runs": rows}, indent=2, default=str))


def print_table(baseline: dict, rows) -> None:
    print(f"\ndense teacher: accuracy {baseline[M.ACCURACY]:.4f}, latency {baseline[M.LATENCY_MS]:.2f} ms "
          f"(p95 {baseline[M.LATENCY_P95_MS]:.2f}), params {baseline[M.PARAMS]:,}, "
          f"fine-tuning emissions {baseline[M.EMISSIONS_KG]:.2e} kg")
    header = f"{'method':<10} {'target':>6} " + " ".join(f"{c:>14}" for c in COLUMNS)
    print(header)
    print("-" * len(header))
    for method, sparsity, metrics in rows:
        cells = " ".join(f"{_fmt(metrics[c]):>14}" for c in COLUMNS)
        print(f"{method:<10} {sparsity:>6.2f} {cells}")


def _fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:.3e}" if abs(value) < 1e-3 and value else f"{value:.4f}"
    return f"{value:,}" if isinstance(value, int) else str(value)


if __name__ == "__main__":
    main()
