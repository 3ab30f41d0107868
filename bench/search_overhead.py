"""Per-trial overhead of the search machinery (Ray Tune + Optuna + results), on this machine.

Runs a search of 16 short synthetic trials (each sleeps a known time, reports twice with a
checkpoint, writes its files) and prints the search's wall time minus the trials' own
time, per trial. Variants: one trial at a time in a fresh worker process (the default),
one at a time in reused workers, and two at a time.

    .venv/bin/python bench/search_overhead.py [--trials 16] [--seconds 0.5]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import pyarrow.parquet as pq  # noqa: E402

from prunetune.config import validate  # noqa: E402
from prunetune.search import run_search  # noqa: E402
from prunetune.search.synthetic import SyntheticTrial, synthetic_teacher  # noqa: E402

VARIANTS = {
    "sequential, fresh worker per trial (default)": {"max_concurrent": 1, "reuse_actors": False},
    "sequential, reused workers": {"max_concurrent": 1, "reuse_actors": True},
    "two at a time, fresh workers": {"max_concurrent": 2, "reuse_actors": False},
}


def search_config(trials: int, **search) -> object:
    return validate({
        "trial": {"max_steps": 10, "rung_latency": "measured"},  # synthetic trials serve no model
        "space": {"trial.sparsity": {"uniform": [0.0, 0.95]}, "trial.temperature": {"loguniform": [1, 16]},
                  "trial.block_size": {"choice": [16, 32]}},
        "search": {"sampler": "nsga2", "num_trials": trials, "seed": 0, "verbosity": 0, "retime": "off",
                   "evaluate_test": False, **search},
        "cluster": {"cpus_per_trial": 1, "num_cpus": 2},
    })


def measure(trials: int, seconds: float, **search) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        started = time.time()
        run_search(search_config(trials, **search), run_dir=Path(tmp) / "run",
                   trial_fn=SyntheticTrial(steps=2, seconds_per_step=seconds / 2), teacher_fn=synthetic_teacher)
        total = time.time() - started
        rows = pq.read_table(Path(tmp) / "run" / "results.parquet").to_pandas()
    own = float(rows["train_seconds"].sum())  # time inside each trial function
    phase = float(rows["finished_at"].max() - rows["started_at"].min())
    concurrency = search["max_concurrent"]
    return {
        "startup_s": float(rows["started_at"].min() - started),
        "trials_phase_s": phase,
        "own_s": own,
        # Wall time of the trial phase not spent inside trials, per trial (at this concurrency).
        "overhead_per_trial_s": (phase * concurrency - own) / len(rows),
        "total_s": total,
        "total_overhead_per_trial_s": (total * concurrency - own) / len(rows),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=0.5, help="each trial's own time")
    args = parser.parse_args()
    print(f"{args.trials} synthetic trials of {args.seconds:.2f} s each; {os.cpu_count()} CPUs\n")
    print(f"{'variant':<46} {'startup':>8} {'trials':>8} {'own':>7} {'overhead/trial':>15} {'incl. startup':>14}")
    for name, search in VARIANTS.items():
        m = measure(args.trials, args.seconds, **search)
        print(f"{name:<46} {m['startup_s']:>7.1f}s {m['trials_phase_s']:>7.1f}s {m['own_s']:>6.1f}s "
              f"{m['overhead_per_trial_s']:>14.2f}s {m['total_overhead_per_trial_s']:>13.2f}s", flush=True)
    print("\noverhead/trial: (trial-phase wall time x concurrency - trials' own time) / trials;"
          "\nincl. startup: the same over the whole search (Ray start, teacher task, Tuner set-up).")


if __name__ == "__main__":
    main()
