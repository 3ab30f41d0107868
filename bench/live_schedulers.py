"""Schedulers compared live: the demo's search under the same time budget, one scheduler at a time.

For each seed and each scheduler, runs the ``quickstart`` preset (or ``--preset``) with that
``search.scheduler`` and ``search.seed`` and the preset's own ``search.time_budget``, one search
at a time on the idle machine, the front re-timed quietly at its end as the preset does. The
teacher and the latency table are prepared once before the first search (a one-trial warm-up
search), so that every compared search spends its whole budget on trials.

It then prints, per search, the finished, stopped and failed trials, the front, and the
hypervolume of the re-timed front; every search is scored against the same bounds (the best
and worst of every finished trial of every compared search, the report's normalisation), so
the hypervolumes compare across searches. Last, per scheduler, the median over seeds, and
for each scheduler the per-seed difference to the first one (fifo by default):

    .venv/bin/python bench/live_schedulers.py [--schedulers fifo,moasha-interval] [--seeds 0,1,2]

About 8 minutes per search on a 2-core machine. A search that has its results is not run
again, so a stopped comparison continues with the same command; a search cut short is run
again from the start (its budget would no longer be the same budget).
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from prunetune import metrics as M  # noqa: E402
from prunetune.analysis.front import Bounds, hypervolume, objective_values  # noqa: E402
from prunetune.analysis.runs import RunData, load_run  # noqa: E402
from prunetune.names import PARETO_FILE  # noqa: E402
from prunetune.pareto import as_minimisation, nondominated_mask  # noqa: E402

BIN = Path(sys.executable).parent
DEFAULT_SCHEDULERS = ("fifo", "moasha-interval")
DEFAULT_SEEDS = (0, 1, 2)
#: The warm-up's only job is the teacher and the table: one short trial, nothing after it.
WARM_UP = {"search.num_trials": 1, "search.time_budget": "null", "search.scheduler": "fifo",
           "search.starting_points": "[]", "search.retime": "off", "search.evaluate_test": "false",
           "trial.max_steps": 10, "trial.eval_every": 10}


def search_command(preset: str, run_dir: Path, settings: dict[str, object]) -> list[str]:
    command = [str(BIN / "prunetune"), "search", preset, "--output", str(run_dir), "--no-wandb", "--verbosity", "0"]
    for key, value in settings.items():
        command += ["--set", f"{key}={value}"]
    return command


def run_once(preset: str, run_dir: Path, settings: dict[str, object]) -> float | None:
    """Run one search unless it ended before; its wall seconds, or None when it had ended.

    The front file is written by the summary that ends ``prunetune search``: a run directory
    without it was cut short.
    """
    if (run_dir / PARETO_FILE).is_file():
        return None
    if run_dir.exists():  # cut short: its budget is gone, start it again
        shutil.rmtree(run_dir)
    started = time.perf_counter()
    subprocess.run(search_command(preset, run_dir, settings), cwd=REPO, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - started


def shared_bounds(runs: dict[tuple[str, int], RunData]) -> Bounds:
    objectives = next(iter(runs.values())).objectives
    values = np.concatenate([objective_values(run.finished, objectives) for run in runs.values()])
    return Bounds.of(as_minimisation(values, list(objectives.values())))


def describe(run: RunData, bounds: Bounds) -> dict[str, object]:
    directions = list(run.objectives.values())
    values = objective_values(run.finished, run.objectives)
    front = run.finished[nondominated_mask(values, directions)] if len(values) else run.finished
    fast = front[front[M.SPEEDUP] >= 5.0] if M.SPEEDUP in front else front.iloc[:0]
    best_fast = fast[M.ACCURACY_DROP].min() * 100 if len(fast) else float("nan")
    return {
        "finished": len(run.finished), "stopped": len(run.stopped), "failed": len(run.errored),
        "front": len(front), "retimed": int(run.trials.get(M.RETIMED, pd.Series(dtype=bool)).fillna(False).sum()),
        "best drop at >=5x (pts)": round(best_fast, 2),
        "max speedup": round(float(front[M.SPEEDUP].max()), 2) if len(front) else float("nan"),
        "hypervolume": hypervolume(values, directions, bounds),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="quickstart")
    parser.add_argument("--schedulers", default=",".join(DEFAULT_SCHEDULERS))
    parser.add_argument("--seeds", default=",".join(map(str, DEFAULT_SEEDS)))
    parser.add_argument("--run-dir", type=Path, default=REPO / "runs" / "live-schedulers")
    args = parser.parse_args()
    schedulers = [name.strip() for name in args.schedulers.split(",") if name.strip()]
    seeds = [int(seed) for seed in args.seeds.split(",")]

    seconds = run_once(args.preset, args.run_dir / "warm-up", WARM_UP)
    if seconds is not None:
        print(f"warm-up (teacher and latency table): {seconds / 60:.1f} min", flush=True)
    runs: dict[tuple[str, int], RunData] = {}
    for index, seed in enumerate(seeds):
        # Alternate the order, so that no scheduler always runs first (a machine drifts over an hour).
        order = schedulers if index % 2 == 0 else list(reversed(schedulers))
        for scheduler in order:
            run_dir = args.run_dir / f"{scheduler}-seed{seed}"
            seconds = run_once(args.preset, run_dir, {"search.scheduler": scheduler, "search.seed": seed})
            if seconds is not None:
                print(f"{scheduler}, seed {seed}: {seconds / 60:.1f} min", flush=True)
            runs[scheduler, seed] = load_run(run_dir)

    bounds = shared_bounds(runs)
    rows = [{"scheduler": scheduler, "seed": seed, **describe(run, bounds)} for (scheduler, seed), run in runs.items()]
    table = pd.DataFrame(rows).sort_values(["scheduler", "seed"])
    print(table.to_string(index=False, float_format=lambda value: f"{value:.4f}"))
    volumes = {name: {row["seed"]: row["hypervolume"] for row in rows if row["scheduler"] == name} for name in schedulers}
    baseline = schedulers[0]
    for name in schedulers:
        print(f"{name}: median hypervolume {statistics.median(volumes[name].values()):.4f}")
    for name in schedulers[1:]:
        differences = [volumes[name][seed] - volumes[baseline][seed] for seed in seeds]
        ratio = statistics.median(volumes[name].values()) / statistics.median(volumes[baseline].values())
        print(f"{name} over {baseline}: hypervolume {statistics.median(differences):+.4f} (median of seeds; "
              f"per seed {', '.join(f'{d:+.4f}' for d in differences)}), medians' ratio {ratio:.3f}")


if __name__ == "__main__":
    main()
