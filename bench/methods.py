"""Compare the compression methods on the default task (BBC News, MiniLM-L6 teacher).

At 50% sparsity and the same number of training steps for every method (movement,
magnitude, group_lasso, movement + filled, test_time), prints accuracy, accuracy drop
against the dense teacher, speedup, train seconds (pruning + fine-tuning) and emissions.

    .venv/bin/python bench/methods.py [--steps 200] [--out DIR]

Settings, sized so the whole bench takes about 15 minutes on 2 CPU cores: the quickstart
task and teacher (800 training and 300 evaluation articles, sequences of 64 tokens; its
teacher is cached after the first run), T = 2, alpha = 0.9, 32x32 attention blocks,
learning rate 1e-4, batch 16, fp32, latency at batch 1 x 64 tokens on the CPU. "Equal
steps": movement + filled prunes for steps - fill_steps and fills for fill_steps.

Each trial times its student and the dense teacher in its own process; when other work
shares the machine, load changes between trials. So at the end every saved student and the
teacher are timed again in one process, in turns, on one thread, keeping each model's
fastest of ``RETIME_ROUNDS`` rounds (interference only ever adds time): the "speedup
re-timed" column. ``--retime`` only re-times the trials a previous run left in
``--out``; ``--methods a,b`` runs only those methods and adds them to what ``--out`` holds.

Where a CUDA GPU is visible, each trial's saved model is also served on it at fp16 and
(compute capability 8.0+) with 2:4 sparsity, and their accuracy and speedup against the
dense fp32 teacher on the same GPU are added as columns. The sparse24 column 2:4-prunes the
finished model without further fine-tuning.
"""

from __future__ import annotations

import argparse
import copy
import json
import shutil
import tempfile
from pathlib import Path

import torch

from prunetune import config as config_module
from prunetune import metrics as M
from prunetune.metrics import FILL_SECONDS
from prunetune.names import MODEL_DIR
from prunetune.trainables.families.compaction import load_compacted
from prunetune.trainables.measure.latency import measure_latency
from prunetune.trainables.measure.quality import evaluate
from prunetune.trainables.methods.test_time import PRUNE_SECONDS
from prunetune.trainables.training.batches import encode
from prunetune.trainables.training.data import load_task_data
from prunetune.trainables.training.precision import to_inference_precision
from prunetune.trainables.training.teacher import load_pretrained, prepare_teacher
from prunetune.trainables.trial import run_trial

FILL_STEPS_FRACTION = 0.25
RETIME_ROUNDS = 5
RETIMED_SPEEDUP = "speedup_retimed"


def runs(steps: int) -> dict[str, dict]:
    """Method name -> the trial keys it sets on top of the shared settings."""
    fill_steps = int(steps * FILL_STEPS_FRACTION)
    return {
        "movement": {"trial.method": "movement"},
        "magnitude": {"trial.method": "magnitude"},
        "group_lasso": {"trial.method": "group_lasso", "trial.group_lasso.penalty": 1e-4,
                        "trial.group_lasso.reweight_every": 25},
        "movement + filled": {"trial.method": "movement", "trial.filled": True, "trial.fill_steps": fill_steps,
                              "trial.max_steps": steps - fill_steps},
        "test_time": {"trial.method": "test_time", "trial.test_time.pseudo_label_samples": 256,
                      "trial.test_time.ranking_samples": 32, "trial.test_time.prune_rounds": 3,
                      "trial.test_time.ffn_group_size": 64},
    }


def bench_config(steps: int) -> config_module.Config:
    # The quickstart task, teacher and latency settings, so that its cached teacher is reused.
    return config_module.load("quickstart", [
        "trial.sparsity=0.5", "trial.block_size=32", "trial.temperature=2.0", "trial.alpha=0.9",
        "trial.learning_rate=1e-4", "trial.batch_size=16", "trial.precision=fp32", "trial.inference_precision=fp32",
        f"trial.max_steps={steps}", f"trial.eval_every={steps}", "trial.device=cpu",
    ])


def gpu_columns(model_dir: Path, teacher_dir: Path, config: config_module.Config) -> dict[str, float]:
    """fp16 and sparse24 accuracy and speedup of a saved model on the GPU, against the dense fp32 teacher."""
    cuda = torch.device("cuda")
    data = load_task_data(config.task)
    tokenizer, teacher = load_pretrained(str(teacher_dir), data)
    split = data.split(config.task.eval_split)
    inputs = encode(tokenizer, split.texts, config.task.max_length)
    latency = config.trial.latency

    def time_ms(model) -> float:
        return measure_latency(model, batch_size=latency.batch_size, seq_len=latency.seq_len,
                               vocab_size=teacher.config.vocab_size, device=cuda,
                               min_run_time=latency.min_run_time).median_ms

    dense_ms = time_ms(teacher.to(cuda).eval())
    columns = {}
    precisions = ["fp16"] + (["sparse24"] if torch.cuda.get_device_capability() >= (8, 0) else [])
    for precision in precisions:
        served = to_inference_precision(copy.deepcopy(load_compacted(model_dir)), precision, cuda)
        columns[f"gpu_{precision}_accuracy"] = evaluate(served, inputs, split.labels, device=cuda).accuracy
        columns[f"gpu_{precision}_speedup"] = dense_ms / time_ms(served)
    return columns


def retime(models: dict[str, Path], teacher_dir: Path, config: config_module.Config) -> dict[str, float]:
    """Speedup of each saved model over the dense teacher, all timed in turns in this process (one thread,
    fastest round: on a shared machine the least disturbed measurement is the closest to the truth)."""
    data = load_task_data(config.task)
    _, teacher = load_pretrained(str(teacher_dir), data)
    loaded = {"teacher": teacher.eval(), **{name: load_compacted(path) for name, path in models.items()}}
    latency = config.trial.latency
    times: dict[str, list[float]] = {name: [] for name in loaded}
    for _ in range(RETIME_ROUNDS):
        for name, model in loaded.items():
            times[name].append(measure_latency(model, batch_size=latency.batch_size, seq_len=latency.seq_len,
                                               vocab_size=teacher.config.vocab_size, device=torch.device("cpu"),
                                               min_run_time=latency.min_run_time, threads=1).median_ms)
    fastest = {name: min(values) for name, values in times.items()}
    return {name: fastest["teacher"] / fastest[name] for name in models}


COLUMNS = [
    ("accuracy", M.ACCURACY, "{:.4f}"), ("acc drop", M.ACCURACY_DROP, "{:+.4f}"), ("speedup", M.SPEEDUP, "{:.2f}x"),
    ("latency ms", M.LATENCY_MS, "{:.2f}"), ("sparsity", M.SPARSITY, "{:.3f}"), ("heads cut", M.HEADS_PRUNED, "{}"),
    ("ffn kept", M.FFN_KEPT, "{:.3f}"), ("train s", M.TRAIN_SECONDS, "{:.1f}"), ("emissions kg", M.EMISSIONS_KG, "{:.2e}"),
    ("speedup re-timed", RETIMED_SPEEDUP, "{:.2f}x"),
]


def print_table(baseline: dict, rows: list[tuple[str, dict]]) -> None:
    extra = sorted({key for _, metrics in rows for key in metrics if key.startswith("gpu_")})
    columns = COLUMNS + [(key.removeprefix("gpu_").replace("_", " "), key, "{:.4f}") for key in extra]
    print(f"\ndense teacher: accuracy {baseline[M.ACCURACY]:.4f}, latency {baseline[M.LATENCY_MS]:.2f} ms, "
          f"params {baseline[M.PARAMS]:,}")
    print("| method | " + " | ".join(title for title, _, _ in columns) + " |")
    print("|---" * (len(columns) + 1) + "|")
    for name, metrics in rows:
        cells = [fmt.format(metrics[key]) if key in metrics else "-" for _, key, fmt in columns]
        print(f"| {name} | " + " | ".join(cells) + " |")
    for name, metrics in rows:
        if PRUNE_SECONDS in metrics:
            print(f"{name}: {metrics[PRUNE_SECONDS]:.1f} s of its train seconds ranked, removed and compacted")
        if FILL_SECONDS in metrics:
            print(f"{name}: {metrics[FILL_SECONDS]:.1f} s of its train seconds fine-tuned the filled model")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=200, help="training steps of every method")
    parser.add_argument("--out", type=Path, default=None, help="where trial outputs go (default: a temp dir)")
    parser.add_argument("--methods", default=None, help="comma-separated subset of: " + ", ".join(runs(1)))
    parser.add_argument("--retime", action="store_true", help="run nothing: re-time the trials --out holds")
    args = parser.parse_args()
    config = bench_config(args.steps)
    teacher = prepare_teacher(config, progress=True)
    out = args.out or Path(tempfile.mkdtemp(prefix="prunetune-methods-"))
    previous = dict(json.loads((out / "methods.json").read_text())["runs"]) if (out / "methods.json").is_file() else {}
    chosen = [] if args.retime else (args.methods.split(",") if args.methods else list(runs(1)))
    unknown = [name for name in chosen if name not in runs(1)]
    if unknown:
        parser.error(f"--methods {args.methods!r}: unknown {unknown}; expected some of {list(runs(1))}")
    fresh = dict(run_all(config, out, args.steps, chosen, previous))
    rows = [(name, fresh.get(name, previous.get(name))) for name in runs(1) if name in fresh or name in previous]
    speedups = retime({name: out / trial_dir(name) / MODEL_DIR for name, _ in rows}, teacher.model_dir, config)
    for name, metrics in rows:
        metrics[RETIMED_SPEEDUP] = speedups[name]
    (out / "methods.json").write_text(json.dumps({"teacher": teacher.baseline, "runs": rows}, indent=2, default=str))
    print_table(teacher.baseline, rows)
    print(f"\ntrial outputs: {out}")


def trial_dir(name: str) -> str:
    return name.replace(" + ", "-")


def run_all(config: config_module.Config, out: Path, steps: int, names: list[str],
            previous: dict[str, dict]) -> list[tuple[str, dict]]:
    rows = []
    for name in names:
        print(f"--- {name}", flush=True)
        directory = out / trial_dir(name)
        shutil.rmtree(directory, ignore_errors=True)  # a fresh trial, not a resumed one
        metrics = run_trial(config.with_values(runs(steps)[name]), output_dir=directory, progress=True)
        if torch.cuda.is_available():
            metrics.update(gpu_columns(directory / MODEL_DIR, teacher_dir=prepare_teacher(config).model_dir, config=config))
        rows.append((name, metrics))
        (out / "methods.json").write_text(json.dumps({"runs": list({**previous, **dict(rows)}.items())}, indent=2, default=str))
    return rows


if __name__ == "__main__":
    main()
