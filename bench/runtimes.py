"""The dense teacher and a pruned student in every runtime and precision of this machine's CPU.

The full default task (BBC News at 128 tokens, the MiniLM-L6 teacher). One movement trial
prunes the student to ``--target`` x in the latency table of ``--prune-in`` (default ONNX
Runtime int8) with layer distillation; then the teacher and that student are served in every
runtime and precision the CPU has (PyTorch eager fp32, bf16 and torch.ao int8; ONNX Runtime
fp32 and dynamic int8; OpenVINO fp32 and NNCF int8 calibrated on 300 training texts), and all of
them are timed in one process, in alternating rounds, at batch 1 x 128 tokens. Printed per
runtime and precision: the teacher's and the student's latency, ``speedup`` (the dense fp32
teacher in PyTorch eager / the student there), ``speedup_same_runtime`` (the teacher in the
same runtime and precision / the student) and both models' validation accuracy there.

    .venv/bin/python bench/runtimes.py [--target 4] [--steps 300] [--prune-in openvino/int8] [--rounds 7]

The teacher, the tables and the trial are cached under ``--work`` (rerunning only re-times).
Figures depend on the machine (its CPU model is printed): run it alone on the machine.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tasks import cpu_model  # noqa: E402

from prunetune import config as config_module  # noqa: E402
from prunetune import metrics as M  # noqa: E402

#: The CPU servings, in the order printed.
SERVINGS = [("torch", "fp32"), ("torch", "bf16"), ("torch", "int8"), ("onnxruntime", "fp32"),
            ("onnxruntime", "int8"), ("openvino", "fp32"), ("openvino", "int8")]


def bench_config(args) -> config_module.Config:
    runtime, precision = args.prune_in.split("/")
    raw, _ = config_module.read_yaml("bbc-news")
    raw["teacher"]["cache_dir"] = str(args.work / "teacher-cache")
    raw["trial"].update({
        "method": "movement", "max_steps": args.steps, "eval_every": args.steps, "batch_size": 16,
        "learning_rate": 1e-4, "block_size": 32, "alpha": 0.9, "temperature": 2.0, "layer_distill": 1.0,
        "precision": "fp32", "device": "cpu", "runtime": runtime, "inference_precision": precision,
        "latency": {"batch_size": 1, "seq_len": 128, "min_run_time": 1.0, "threads": args.threads},
    })
    raw["trial"].pop("sparsity", None)
    raw["trial"]["target_speedup"] = args.target
    raw.pop("space", None)  # one trial: the preset's search space plays no part
    return config_module.validate(raw, check_model=True)


def student_dir(config, args) -> Path:
    """The pruned student's model directory: the trial, run once and cached."""
    from prunetune.names import MODEL_DIR, RESULT_FILE
    from prunetune.trainables.trial import run_trial

    out = args.work / f"student-{args.prune_in.replace('/', '-')}-{args.target}-{args.steps}"
    if not (out / RESULT_FILE).is_file():
        metrics = run_trial(config, output_dir=out, progress=True)
        print(f"trial: predicted {metrics[M.PREDICTED_SPEEDUP]:.2f}x in {args.prune_in}, measured "
              f"speedup_same_runtime {metrics[M.SPEEDUP_SAME_RUNTIME]:.2f}x, accuracy {metrics[M.ACCURACY]:.4f}")
    result = json.loads((out / RESULT_FILE).read_text())["metrics"]
    print(f"student: layers' heads {result[M.LAYER_HEADS]}, FFN {result[M.LAYER_FFN]}")
    return out / MODEL_DIR


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", type=float, default=4.0)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--prune-in", default="onnxruntime/int8", help="runtime/precision whose table the student "
                        "is pruned against")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--min-run-time", type=float, default=7.0, help="seconds of timing per model, all rounds")
    parser.add_argument("--calibration", type=int, default=300)
    parser.add_argument("--work", type=Path, default=Path("runs/bench-runtimes"))
    args = parser.parse_args()

    import copy

    import torch

    from prunetune.trainables.families.compaction import load_compacted
    from prunetune.trainables.measure.latency import measure_alternating
    from prunetune.trainables.measure.quality import evaluate_task
    from prunetune.trainables.runtimes import RUNTIMES
    from prunetune.trainables.training.data import load_task_data
    from prunetune.trainables.training.teacher import load_pretrained, prepare_teacher
    from prunetune.trainables.trial import calibration_feeds

    torch.set_num_threads(args.threads)
    config = bench_config(args)
    data = load_task_data(config.task)
    teacher_artifacts = prepare_teacher(config, data=data, progress=True)
    model_dir = student_dir(config, args)
    tokenizer, teacher = load_pretrained(str(teacher_artifacts.model_dir), data)
    teacher.eval()
    student = load_compacted(model_dir)
    kind = config.task_kind
    length = config.task.max_length
    train_encoded = kind.encode(tokenizer, data.split("train"), max_length=length, task=config.task)
    calibration = calibration_feeds(train_encoded.inputs, args.calibration, seed=0)
    eval_split = data.split(config.task.eval_split)
    eval_encoded = kind.encode(tokenizer, eval_split, max_length=length, task=config.task)
    cpu = torch.device("cpu")

    models, accuracy = {}, {}
    for runtime_name, precision in SERVINGS:
        runtime = RUNTIMES[runtime_name]
        if runtime.installed_problems() or runtime.device_problems(precision, cpu):
            print(f"skipped {runtime_name}/{precision}: {(runtime.installed_problems() or runtime.device_problems(precision, cpu))[0]}")
            continue
        for role, model in (("teacher", teacher), ("student", student)):
            work = args.work / "served" / f"{role}-{runtime_name}-{precision}"
            served = runtime.serve(copy.deepcopy(model), precision=precision, device=cpu, threads=args.threads,
                                   work_dir=work, calibration=calibration)
            name = f"{role} {runtime_name}/{precision}"
            models[name] = served.model
            scores = evaluate_task(served.model, eval_encoded, eval_split, kind=kind, label_names=data.label_names,
                                   task=config.task, device=cpu)
            accuracy[name] = scores[M.ACCURACY]
    timed = measure_alternating(models, batch_size=1, seq_len=128, vocab_size=int(teacher.config.vocab_size),
                                device=cpu, min_run_time=args.min_run_time, threads=args.threads, rounds=args.rounds,
                                max_spread=0.1)
    reference = timed["teacher torch/fp32"].median_ms
    print(f"\nCPU: {cpu_model()}, {args.threads} threads; batch 1 x 128 tokens; {len(models)} models in "
          f"{args.rounds} alternating rounds; accuracy on {len(eval_split.texts)} validation texts")
    print(f"student pruned to {args.target}x in the {args.prune_in} table\n")
    print("| runtime | precision | teacher ms | student ms | speedup | speedup_same_runtime | teacher acc | "
          "student acc | spread |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for runtime_name, precision in SERVINGS:
        key = f"{runtime_name}/{precision}"
        if f"student {key}" not in timed:
            continue
        t, s = timed[f"teacher {key}"], timed[f"student {key}"]
        print(f"| {runtime_name} | {precision} | {t.median_ms:.2f} | {s.median_ms:.2f} | {reference / s.median_ms:.2f}x | "
              f"{t.median_ms / s.median_ms:.2f}x | {accuracy[f'teacher {key}']:.4f} | {accuracy[f'student {key}']:.4f} | "
              f"{max(t.spread, s.spread):.0%} |")
    print(f"\ndense teacher speed-ups over PyTorch eager fp32 ({reference:.2f} ms): " + ", ".join(
        f"{name.split(' ', 1)[1]} {reference / latency.median_ms:.2f}x" for name, latency in timed.items()
        if name.startswith("teacher")))


if __name__ == "__main__":
    main()
