"""Benchmark one trial per encoder family at a target speed-up in ONNX Runtime int8, on BBC News.

No family but BERT can be downloaded here, so each family's encoder is built in code at a small
size (hidden 256, 4 layers of 4 heads, FFN 1024, MiniLM's WordPiece vocabulary and tokenizer;
EuroBERT with grouped-query attention, 2 key/value heads),
randomly initialised, and fine-tuned briefly on the default task as the teacher (cached). One
movement trial per family then prunes it to ``--target`` x in ONNX Runtime at int8, with layer
distillation. Printed per family: its layer shape, teacher and student accuracy, the drop,
``speedup`` (against the dense fp32 teacher in PyTorch eager), ``speedup_same_runtime`` (against
the dense teacher in ONNX Runtime int8) and the latency table's predicted speed-up.

    .venv/bin/python bench/families.py [--target 3] [--steps 200] [--only modernbert --only mpnet]

Figures depend on the machine (its CPU model is printed): run it alone on the machine. Randomly
initialised small teachers trained for a few epochs are far from the published checkpoints:
compare the families with each other, not with published accuracies.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tasks import cpu_model  # noqa: E402

from prunetune import config as config_module  # noqa: E402
from prunetune import metrics as M  # noqa: E402
from prunetune.builtins import resolve_model  # noqa: E402
from prunetune.trainables.families import FAMILIES  # noqa: E402
from prunetune.trainables.trial import run_trial  # noqa: E402

SIZES = dict(hidden=256, layers=4, heads=4, ffn=1024, positions=514)
#: Per family, what differs from its defaults at this size (ModernBERT: its released 128-token window).
EXTRA = {"modernbert": {"local_attention": 128}}


def build_family_dir(family: str, directory: Path) -> Path:
    """A randomly initialised encoder of ``family`` with MiniLM's tokenizer, saved as a model directory."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    from tests.models import family_config

    if (directory / "config.json").is_file():
        return directory
    tokenizer = AutoTokenizer.from_pretrained(resolve_model("minilm-l6"))
    config = family_config(family, vocab_size=tokenizer.vocab_size, num_labels=5, **SIZES,
                            **EXTRA.get(family, {}))
    # The special tokens are MiniLM's: [CLS] opens (bos), [SEP] closes (eos).
    ids = {"pad_token_id": tokenizer.pad_token_id, "cls_token_id": tokenizer.cls_token_id,
           "bos_token_id": tokenizer.cls_token_id, "sep_token_id": tokenizer.sep_token_id,
           "eos_token_id": tokenizer.sep_token_id, "mask_token_id": tokenizer.mask_token_id}
    for name, value in ids.items():
        if getattr(config, name, None) is not None:
            setattr(config, name, value)
    torch.manual_seed(0)
    AutoModel.from_config(config).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


def trial_config(model_dir: Path, cache: Path, args) -> config_module.Config:
    raw = {
        "task": {"dataset": "bbc_news", "max_length": 128, "seed": 0, "max_train_samples": args.train_samples,
                 "max_eval_samples": args.eval_samples},
        "teacher": {"model": str(model_dir), "epochs": args.teacher_epochs, "learning_rate": 5e-4,
                    "cache_dir": str(cache)},
        "trial": {"method": "movement", "target_speedup": args.target, "runtime": "onnxruntime",
                  "inference_precision": "int8", "layer_distill": 1.0, "max_steps": args.steps,
                  "eval_every": args.steps, "batch_size": 16, "learning_rate": 2e-4, "temperature": 2.0,
                  "alpha": 0.9, "latency": {"batch_size": 1, "seq_len": 128, "min_run_time": 1.0}},
    }
    return config_module.validate(raw, check_model=True)


def shape_of(family: str) -> str:
    shape = FAMILIES[family].shape()
    grouped = ", grouped kv" if shape["kv"] == "grouped" else ""
    return f"{shape['norm']}, {shape['qkv']} qkv, {shape['ffn']} ffn, {shape['positions']}{grouped}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", type=float, default=3.0)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--teacher-epochs", type=float, default=4.0)
    parser.add_argument("--train-samples", type=int, default=1000)
    parser.add_argument("--eval-samples", type=int, default=300)
    parser.add_argument("--only", choices=sorted(FAMILIES), action="append")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="prunetune-families-"))
    print(f"machine: {cpu_model()}; outputs in {out}")
    header = (f"{'family':<11} {'shape':<66} {'teacher':>7} {'student':>7} {'drop':>7} {'speedup':>8} "
              f"{'same rt':>8} {'predicted':>9}")
    rows = []
    for family in args.only or sorted(FAMILIES):
        model_dir = build_family_dir(family, out / "models" / family)
        metrics = run_trial(trial_config(model_dir, out / "teachers", args), output_dir=out / "trials" / family)
        rows.append(f"{family:<11} {shape_of(family):<66} {metrics[M.TEACHER_ACCURACY]:>7.4f} "
                    f"{metrics[M.ACCURACY]:>7.4f} {metrics[M.ACCURACY_DROP]:>7.4f} {metrics[M.SPEEDUP]:>7.2f}x "
                    f"{metrics[M.SPEEDUP_SAME_RUNTIME]:>7.2f}x {metrics.get(M.PREDICTED_SPEEDUP, float('nan')):>8.2f}x")
        print("\n".join([header, *rows]), flush=True)


if __name__ == "__main__":
    main()
