"""Benchmark one trial per task kind, on tasks built from BBC News, at a target speed-up in ONNX Runtime int8.

The kinds' datasets come from ``bench/task_data.py`` (sentence pairs: does this body belong
to this headline; regression: a 0-5 similarity of headline and body; tagging: money, date and
percentage entities; QA: which amount, date or percentage a context gives). For each kind the
MiniLM-L6 teacher is fine-tuned with the kind's head (cached), then one movement trial prunes
it to ``--target`` x in ONNX Runtime at int8 with layer distillation. Printed per kind: the
headline metric of student and teacher, its drop, the share of the teacher's headline kept,
``speedup`` (against the dense fp32 teacher in PyTorch eager), ``speedup_same_runtime``
(against the dense teacher in ONNX Runtime int8) and the table's prediction.

    .venv/bin/python bench/tasks.py [--target 3] [--steps 300] [--train-samples 1200] [--only question_answering]

Figures depend on the machine (its CPU model is printed): run it where you will deploy, and
alone on the machine.
"""

from __future__ import annotations

import argparse
import platform
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import task_data  # noqa: E402

from prunetune import config as config_module  # noqa: E402
from prunetune import metrics as M  # noqa: E402
from prunetune.trainables.trial import run_trial  # noqa: E402

#: kind -> (dataset built by task_data, task keys).
TASKS = {
    "classification": ("pairs", {"text_column": "text", "text_pair_column": "text_pair", "label_column": "label"}),
    "regression": ("regression", {"kind": "regression", "text_column": "text", "text_pair_column": "text_pair",
                                  "label_column": "score"}),
    "token_classification": ("tagging", {"kind": "token_classification"}),
    "question_answering": ("qa", {"kind": "question_answering", "doc_stride": 32}),
}


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines() if Path("/proc/cpuinfo").is_file() else []:
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown CPU"


def trial_config(kind: str, dataset: Path, args) -> config_module.Config:
    _, keys = TASKS[kind]
    task = {"dataset": str(dataset), "max_length": 128, "seed": 0, "max_train_samples": args.train_samples,
            "max_eval_samples": args.eval_samples, **keys}
    raw = {
        "task": task,
        "teacher": {"model": "minilm-l6", "epochs": args.teacher_epochs, "learning_rate": 1e-4},
        "trial": {"method": "movement", "target_speedup": args.target, "runtime": "onnxruntime",
                  "inference_precision": "int8", "layer_distill": 1.0, "max_steps": args.steps,
                  "eval_every": args.steps, "batch_size": 16, "learning_rate": 1e-4, "temperature": 2.0,
                  "alpha": 0.9, "latency": {"batch_size": 1, "seq_len": 128, "min_run_time": 2.0}},
    }
    return config_module.validate(raw, check_model=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", type=float, default=3.0)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--teacher-epochs", type=float, default=3.0)
    parser.add_argument("--train-samples", type=int, default=1200)
    parser.add_argument("--eval-samples", type=int, default=300)
    parser.add_argument("--only", choices=list(TASKS), action="append")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="prunetune-tasks-"))
    datasets = task_data.build_all(out / "data")
    print(f"machine: {cpu_model()}; outputs in {out}")
    header = (f"{'kind':<22} {'metric':<8} {'student':>8} {'teacher':>8} {'drop':>7} {'kept':>6} {'speedup':>8} "
              f"{'same rt':>8} {'predicted':>9} {'train s':>8}")
    rows = []
    for kind in args.only or TASKS:
        config = trial_config(kind, datasets[TASKS[kind][0]], args)
        metrics = run_trial(config, output_dir=out / kind, progress=True)
        headline = M.headline_metric(kind)
        student, teacher = metrics[headline], metrics[M.teacher_key(headline)]
        rows.append(f"{kind:<22} {headline:<8} {student:>8.4f} {teacher:>8.4f} {metrics[M.drop_key(headline)]:>7.4f} "
                    f"{student / teacher if teacher else float('nan'):>6.1%} {metrics[M.SPEEDUP]:>7.2f}x "
                    f"{metrics[M.SPEEDUP_SAME_RUNTIME]:>7.2f}x {metrics.get(M.PREDICTED_SPEEDUP, float('nan')):>8.2f}x "
                    f"{metrics[M.TRAIN_SECONDS]:>8.0f}")
        print("\n".join([header, *rows]), flush=True)


if __name__ == "__main__":
    main()
