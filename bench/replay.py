"""Replay searches on recorded quickstart curves: which sampler x scheduler reaches a good front soonest.

Every combination of ``--samplers`` x ``--schedulers`` is replayed ``--seeds`` times on the
curves table (``bench/record_curves.py`` recorded it) with a simulated clock: each trial
takes its recorded seconds, ``max_concurrent`` workers, a sampled configuration answered by
the nearest recorded trial. The sampler and scheduler are the live search's own
(``prunetune.search.replay``).

The budget is random + fifo's: ``--trials`` trials; its median simulated time is the
budget B and the median of its final hypervolumes the target. Every combination runs for
``--horizon`` x B of simulated time. Printed: the hypervolume (finished trials that meet the
search's constraints) against simulated time, the time each combination needs to reach the
target (median and quartiles over seeds), and, last, ``<scheduler> speedup to target: X`` for
moasha-interval and moasha, B over the scheduler's best combination's median time to the target.

    .venv/bin/python bench/replay.py [--seeds 10] [--trials 30] [--stopped-as values,infeasible]
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import optuna

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from prunetune.config import load  # noqa: E402
from prunetune.search.replay import Curves, ReplayRun, Scorer, replay  # noqa: E402

DEFAULT_CURVES = REPO / "bench" / "curves" / "quickstart-speed.parquet"
FRACTIONS = (0.25, 0.5, 0.75, 1.0)


def quartiles(values: list[float]) -> tuple[float, float, float]:
    """Median and quartiles; inf (never reached) sorts last."""
    ordered = sorted(values)
    pick = lambda q: ordered[min(len(ordered) - 1, int(math.floor(q * (len(ordered) - 1) + 0.5)))]  # noqa: E731
    return pick(0.25), pick(0.5), pick(0.75)


def minutes(seconds: float) -> str:
    return "never" if math.isinf(seconds) else f"{seconds / 60:.1f}"


def rung_fidelity(curves: Curves) -> None:
    """How close each rung's figures come to the trial's final ones, per objective."""
    from scipy.stats import spearmanr

    print("rung figures against the final ones, over the recorded trials (|rung / final - 1|: median, 90th "
          "percentile; Spearman rank correlation)")
    steps = sorted({report.step for trial in curves.trials for report in trial.reports})
    for key in curves.config.search.objectives:
        for step in steps:
            pairs = [(report.values[key], trial.final.values[key]) for trial in curves.trials if not trial.failed
                     for report in trial.reports if report.step == step and key in report.values
                     and key in trial.final.values]
            if len(pairs) < 3:
                continue
            rung, final = np.array(pairs).T
            error = np.abs(rung / final - 1)
            print(f"  {key:<14} step {step:>4}: {np.median(error):6.1%}  {np.quantile(error, 0.9):6.1%}  "
                  f"rho {spearmanr(rung, final).statistic:+.2f}  ({len(pairs)} trials)")
    print()


def baseline(curves: Curves, scorer: Scorer, seeds: list[int], trials: int) -> tuple[float, float]:
    """random + fifo with its full budget: (median simulated time, median final hypervolume)."""
    runs = [replay(curves, sampler="random", scheduler="fifo", seed=seed, num_trials=trials, horizon=math.inf,
                   max_trials=trials, scorer=scorer) for seed in seeds]
    return statistics.median(run.times[-1] for run in runs), statistics.median(run.hypervolumes[-1] for run in runs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--curves", type=Path, default=DEFAULT_CURVES)
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--trials", type=int, default=30, help="random + fifo's budget, in trials")
    parser.add_argument("--samplers", default="random,tpe,nsga2,gp")
    parser.add_argument("--schedulers", default="fifo,moasha,moasha-interval")
    parser.add_argument("--stopped-as", default="values", help="how stopped trials are told to Optuna: values, "
                        "infeasible, or both (a comma list)")
    parser.add_argument("--preset", default="quickstart", help="the preset whose starting points a live search "
                        "evaluates first (the curves were recorded without them)")
    parser.add_argument("--horizon", type=float, default=1.5, help="simulated time of each replay, in budgets")
    args = parser.parse_args()

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    curves = Curves.read(args.curves)
    # Recorded without starting points (to cover the space); a live search of the preset starts from its own.
    preset = load(args.preset, check_model=False).search
    curves.config = curves.config.with_values({"search.known_good_points": preset.known_good_points,
                                               "search.starting_points": preset.starting_points})
    scorer = Scorer(curves)
    seeds = list(range(args.seeds))
    rung_fidelity(curves)
    print(f"curves: {args.curves.relative_to(REPO) if args.curves.is_relative_to(REPO) else args.curves} "
          f"({len(curves.trials)} recorded trials; recorded with `{curves.command}`)")
    budget, target = baseline(curves, scorer, seeds, args.trials)
    print(f"budget B: random + fifo, {args.trials} trials, {curves.config.search.max_concurrent} workers: "
          f"{budget / 60:.1f} min simulated (median of {len(seeds)} seeds); target hypervolume {target:.4f}\n")

    results: dict[str, list[ReplayRun]] = {}
    for sampler in args.samplers.split(","):
        for scheduler in args.schedulers.split(","):
            for told in (args.stopped_as.split(",") if scheduler != "fifo" else ["-"]):
                name = f"{sampler} + {scheduler}" + (f" ({told})" if told != "-" and "," in args.stopped_as else "")
                started = time.perf_counter()
                results[name] = [replay(curves, sampler=sampler, scheduler=scheduler, seed=seed,
                                        num_trials=args.trials, horizon=args.horizon * budget, scorer=scorer,
                                        stopped_as=None if told == "-" else told) for seed in seeds]
                print(f"  replayed {name}: {time.perf_counter() - started:.0f} s", file=sys.stderr, flush=True)

    print_curves(results, budget)
    best = print_times(results, budget, target)
    for scheduler in ("moasha-interval", "moasha"):
        if scheduler in best:
            name, median = best[scheduler]
            print(f"best {scheduler} combination: {name}")
            if math.isinf(median):
                print(f"{scheduler} speedup to target: never (no combination reached it in half the seeds)")
            else:
                print(f"{scheduler} speedup to target: {budget / median:.2f}" if median > 0
                      else f"{scheduler} speedup to target: inf")


def print_curves(results: dict[str, list[ReplayRun]], budget: float) -> None:
    header = "  ".join(f"{fraction:>4.2f}B" for fraction in FRACTIONS)
    print(f"hypervolume against simulated wall-clock (median over seeds; B = {budget / 60:.1f} min)")
    print(f"{'combination':<30} {header}")
    for name, runs in results.items():
        cells = "  ".join(f"{statistics.median(run.hypervolume_at(f * budget) for run in runs):>5.3f}"
                          for f in FRACTIONS)
        print(f"{name:<30} {cells}")
    print()


def print_times(results: dict[str, list[ReplayRun]], budget: float, target: float) -> dict[str, tuple[str, float]]:
    """The table of times to the target; returns, per early-stopping scheduler, its best combination."""
    print("time to random + fifo's full-budget hypervolume, simulated minutes (median [quartiles]); trials per "
          "search (mean started, stopped)")
    best: dict[str, tuple[str, float]] = {}
    for name, runs in results.items():
        times = [run.time_to(target) for run in runs]
        low, median, high = quartiles(times)
        reached = sum(not math.isinf(t) for t in times)
        started = np.mean([run.started for run in runs])
        stopped = np.mean([run.stopped for run in runs])
        speedup = "-" if math.isinf(median) else f"x{budget / median:.2f}"
        print(f"{name:<30} {minutes(median):>6} [{minutes(low)}, {minutes(high)}]  reached {reached}/{len(runs)}  "
              f"{speedup:>6}  trials {started:.0f}, stopped {stopped:.0f}")
        scheduler = runs[0].scheduler
        if scheduler != "fifo" and (scheduler not in best or median < best[scheduler][1]):
            best[scheduler] = (name, median)
    print()
    return best


if __name__ == "__main__":
    main()
