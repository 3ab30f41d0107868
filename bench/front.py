"""A search for fast models on the full default task, and the best trial for each speed target.

The full default task: all of BBC News at 128 tokens, the MiniLM-L6 teacher; latency at
batch 1 x 128 tokens on 2 threads, every finished trial re-timed quietly after the search.
The space holds the keys that build fast models: the target speed-up (pruning by the
per-layer latency table), the weight of layer-wise distillation, the runtime (PyTorch or
ONNX Runtime) and the inference precision (fp32 or int8), with the distillation
temperature. Before the search, the teacher is fine-tuned and the latency tables are
measured on the idle machine (cached: the trials read them).

It prints the front, how close the table's predicted speed-ups came to the measured ones,
and, for each target below, the best trial that meets it (the one with the largest
speed-up among those within the accuracy limit); that trial is then repeated with other
seeds, one at a time on the idle machine, and the figures are given as mean and spread
over all its seeds. A target that no trial meets is said so, with the closest trial.

    .venv/bin/python bench/front.py [--trials 12] [--steps 300] [--seeds 3] [--run-dir runs/front] [--reuse]

The same search, without the per-target repeats: ``prunetune search bbc-news-cpu``.

Nothing else should run on the machine meanwhile: latencies are the point.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import pandas as pd  # noqa: E402

from prunetune import config as config_module  # noqa: E402
from prunetune import metrics as M  # noqa: E402

#: The search this bench runs: a built-in preset, so that a user gets the same search by its name.
PRESET = "bbc-news-cpu"


@dataclass(frozen=True)
class Target:
    name: str
    metric: str
    at_least: float
    max_drop: float  # accuracy points


TARGETS = (
    Target("pruning's own: speedup_same_runtime >= 3.0x at <= 1.0 point", M.SPEEDUP_SAME_RUNTIME, 3.0, 1.0),
    Target("deployment: speedup >= 10x at <= 1.0 point", M.SPEEDUP, 10.0, 1.0),
    Target("deployment: speedup >= 15x at <= 2.0 points", M.SPEEDUP, 15.0, 2.0),
)
SHOWN = ["trial_id", M.ACCURACY, M.ACCURACY_DROP, M.SPEEDUP, M.SPEEDUP_SAME_RUNTIME, M.PREDICTED_SPEEDUP,
         M.LATENCY_MS, M.SPARSITY, "trial.target_speedup", "trial.layer_distill", "trial.runtime",
         "trial.inference_precision", "trial.temperature"]


def bench_config(args) -> config_module.Config:
    raw, _ = config_module.read_yaml(PRESET)
    raw["trial"].update({"max_steps": args.steps, "eval_every": args.steps})
    raw["search"]["num_trials"] = args.trials
    raw["output"] = {"dir": str(args.run_dir), "wandb": {"enabled": False}}
    return config_module.validate(raw, check_model=True)


def prepare(config: config_module.Config) -> None:
    """The teacher and every latency table the space can ask for, measured on the idle machine
    (the search's driver would measure the tables too; here they are timed and printed)."""
    from prunetune.trainables.methods._speed import prepare_tables
    from prunetune.trainables.training.data import load_task_data
    from prunetune.trainables.training.teacher import prepare_teacher

    data = load_task_data(config.task)
    teacher = prepare_teacher(config, data=data, progress=True)
    print(f"teacher: accuracy {teacher.baseline[M.ACCURACY]:.4f} on {len(data.split(config.task.eval_split).texts)} "
          f"texts, cached in {teacher.root}")
    for table in prepare_tables(config, teacher.model_dir, teacher.root):
        key = table.key
        print(f"latency table {key.runtime}/{key.precision}: dense {table.dense_ms:.2f} ms predicted (base "
              f"{table.base_ms:.2f}, a layer {table.layer(key.num_heads, key.ffn_width):.2f} dense, "
              f"{table.layer(1, table.widths[0]):.2f} at 1 head and {table.widths[0]} neurons, {table.removed_ms:.3f} "
              f"removed), at most {table.max_speedup():.1f}x; measured in "
              f"{table.seconds:.0f} s")


def best_meeting(finished: pd.DataFrame, target: Target) -> tuple[pd.Series | None, bool]:
    """The fastest trial within the accuracy limit that meets the target; else the closest one."""
    within = finished[finished[M.ACCURACY_DROP] * 100 <= target.max_drop]
    meeting = within[within[target.metric] >= target.at_least]
    if len(meeting):
        return meeting.sort_values(target.metric, ascending=False).iloc[0], True
    if len(within):
        return within.sort_values(target.metric, ascending=False).iloc[0], False
    if len(finished):
        return finished.sort_values(M.ACCURACY_DROP).iloc[0], False
    return None, False


def repeat_with_seeds(config: config_module.Config, row: pd.Series, seeds: list[int], out: Path) -> list[dict]:
    from prunetune.trainables.trial import run_trial

    values = {key: _plain(row[key]) for key in config.space if key in row}
    results = []
    for seed in seeds:
        trial_config = config.with_trial_values({**values, "trial.seed": seed})
        started = time.perf_counter()
        metrics = run_trial(trial_config, output_dir=out / f"{row['trial_id']}-seed{seed}")
        print(f"  seed {seed}: drop {metrics[M.ACCURACY_DROP] * 100:.2f} pts, speedup {metrics[M.SPEEDUP]:.2f}x, "
              f"same runtime {metrics[M.SPEEDUP_SAME_RUNTIME]:.2f}x ({time.perf_counter() - started:.0f} s)")
        results.append(metrics)
    return results


def _plain(value):
    return value.item() if hasattr(value, "item") else value


def _spread(values: list[float]) -> str:
    mean = statistics.fmean(values)
    spread = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{mean:.2f} ± {spread:.2f} (min {min(values):.2f}, max {max(values):.2f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=12)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--seeds", type=int, default=3, help="seeds per target's trial, the search's included")
    parser.add_argument("--run-dir", type=Path, default=REPO / "runs" / "front")
    parser.add_argument("--reuse", action="store_true",
                        help="read the finished search in --run-dir instead of running it (targets and seeds only)")
    args = parser.parse_args()
    started = time.perf_counter()
    config = bench_config(args)
    if not args.reuse:
        prepare(config)
        print(f"prepared in {(time.perf_counter() - started) / 60:.1f} min")

        from prunetune.api import run_search

        run_search(config, run_dir=args.run_dir, wandb=False)
        print(f"search done at {(time.perf_counter() - started) / 60:.1f} min")
    results = pd.read_parquet(args.run_dir / "results.parquet")
    finished = results[results["status"] == "TERMINATED"].copy()
    pd.set_option("display.width", 250)
    pd.set_option("display.max_columns", 30)
    print(f"\n{len(finished)} finished of {len(results)} trials:")
    print(finished[[c for c in SHOWN if c in finished]].sort_values(M.ACCURACY, ascending=False).round(4)
          .to_string(index=False))
    pareto = args.run_dir / "pareto.parquet"
    if pareto.is_file():
        print(f"front ({M.ACCURACY} max, {M.LATENCY_MS} min): "
              f"{', '.join(pd.read_parquet(pareto)['trial_id'].astype(str))}")
    ratio = finished[M.SPEEDUP_SAME_RUNTIME] / finished[M.PREDICTED_SPEEDUP]
    print(f"measured / predicted speed-up (same runtime, re-timed quietly), {len(ratio)} trials: median "
          f"{ratio.median():.2f}, range {ratio.min():.2f}..{ratio.max():.2f}")
    for runtime, group in finished.groupby("trial.runtime"):
        r = group[M.SPEEDUP_SAME_RUNTIME] / group[M.PREDICTED_SPEEDUP]
        print(f"  {runtime}: median {r.median():.2f}, range {r.min():.2f}..{r.max():.2f} ({len(r)} trials)")

    repeated: dict[str, list[dict]] = {}
    out = args.run_dir / "repeats"
    for target in TARGETS:
        row, met = best_meeting(finished, target)
        print(f"\n{target.name}:")
        if row is None:
            print("  no finished trial")
            continue
        print(f"  {'met by' if met else 'NOT MET; closest'} trial {row['trial_id']}: {target.metric} "
              f"{row[target.metric]:.2f}x at a drop of {row[M.ACCURACY_DROP] * 100:.2f} points "
              f"({row['trial.runtime']}, {row['trial.inference_precision']}, target_speedup "
              f"{row['trial.target_speedup']:.2f}, layer_distill {row['trial.layer_distill']})")
        trial_id = str(row["trial_id"])
        if trial_id not in repeated:
            repeated[trial_id] = repeat_with_seeds(config, row, list(range(1, args.seeds)), out)
        seeds = [{M.ACCURACY_DROP: row[M.ACCURACY_DROP], target.metric: row[target.metric]}] + repeated[trial_id]
        print(f"  over {len(seeds)} seeds: drop (points) {_spread([s[M.ACCURACY_DROP] * 100 for s in seeds])}; "
              f"{target.metric} {_spread([s[target.metric] for s in seeds])}")
    print(f"\ntotal {(time.perf_counter() - started) / 60:.1f} min")


if __name__ == "__main__":
    main()
