"""How far the figures a search puts on its front are from the truth, and whether energies add up.

Runs the quickstart search (two trials at a time on this machine; the search re-times its
front quietly at the end, ``search.retime: front``), then, in this one otherwise idle
process, times every finished trial's model again beside the dense teacher in alternating
rounds (at least 5), with the trial's own settings and thread count. It prints, per trial,
the in-search latency, the figure the project uses (the quiet re-timing where there is one)
and the idle figure; the median and largest deviation of the figures the front uses from
the idle ones; whether the front built from the project's figures equals the front built
from the idle ones; and the sum of the trials' energies against what the node used over
the search.

    .venv/bin/python bench/objective_fidelity.py [--run-dir runs/fidelity] [--rounds 7] [--seconds 2]
        [--set search.num_trials=10 ...]

An existing ``--run-dir`` is not searched again: only the idle re-timing and the figures run.

Run it on an otherwise idle machine: anything else running moves the idle figures too.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
from pathlib import Path

import numpy as np

from prunetune import api
from prunetune import metrics as M
from prunetune.cluster import RunDir
from prunetune.names import ENERGY_FILE, RESULTS_FILE, STATUS, TERMINATED, TRIAL_ID
from prunetune.pareto import nondominated_mask
from prunetune.search._results import read_rows
from prunetune.search._retime import retime_request, run_teacher_dir
from prunetune.trainables.measure.retime import retime


def run_search(run_dir: Path, overrides: list[str]) -> None:
    if (run_dir / RESULTS_FILE).is_file():
        return
    api.run_search("quickstart", run_dir=run_dir, overrides=["search.max_concurrent=2", *overrides], wandb=False)


def idle_latencies(run_dir: Path, rows: list[dict], rounds: int, seconds: float) -> dict[str, dict]:
    """Every finished trial timed again here, beside the teacher, with its own settings."""
    run = RunDir(run_dir)
    teacher_dir = run_teacher_dir(run)
    idle = {}
    for row in rows:
        request = retime_request(row, run, teacher_dir, gpu=False)
        request = dataclasses.replace(request, rounds=rounds, min_run_time=seconds)
        idle[str(row[TRIAL_ID])] = retime(request)
        print(f"  timed {row[TRIAL_ID]} idle: {idle[str(row[TRIAL_ID])][M.LATENCY_MS]:.3f} ms", flush=True)
    return idle


def front_ids(rows: list[dict], objectives: dict[str, str], latency: dict[str, float]) -> set[str]:
    values = np.array([[latency[str(r[TRIAL_ID])] if key == M.LATENCY_MS else float(r[key]) for key in objectives]
                       for r in rows])
    mask = nondominated_mask(values, list(objectives.values()))
    return {str(r[TRIAL_ID]) for r, on in zip(rows, mask) if on}


def print_table(rows: list[dict], idle: dict[str, dict], front: set[str]) -> list[float]:
    print("\n| trial | sparsity | precision | in search (ms) | project (ms) | re-timed | idle (ms) | "
          "in search / idle | project / idle | on front |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    deviations = []
    for row in rows:
        trial_id = str(row[TRIAL_ID])
        searched = row.get(M.in_search(M.LATENCY_MS)) if row.get(M.RETIMED) else row[M.LATENCY_MS]
        project, quiet = float(row[M.LATENCY_MS]), idle[trial_id][M.LATENCY_MS]
        if trial_id in front:
            deviations.append(abs(project / quiet - 1))
        print(f"| {trial_id} | {row['trial.sparsity']:.2f} | {row['trial.inference_precision']} | {float(searched):.2f} "
              f"| {project:.2f} | {'yes' if row.get(M.RETIMED) else 'no'} | {quiet:.2f} | {float(searched) / quiet:.2f} "
              f"| {project / quiet:.2f} | {'yes' if trial_id in front else ''} |")
    return deviations


def energy_lines(run_dir: Path, rows: list[dict]) -> list[str]:
    sessions = json.loads((run_dir / ENERGY_FILE).read_text()) if (run_dir / ENERGY_FILE).is_file() else []
    node = sum(n["node"]["energy_kwh"] for s in sessions for n in s["nodes"].values())
    attributed = sum(n["attributed_kwh"] for s in sessions for n in s["nodes"].values())
    trials = sum(float(r[M.ENERGY_KWH]) for r in rows)
    if not node:
        return ["energy: no node ledger in this run (energy.json missing)"]
    return [f"energy: trials {trials:.3e} kWh, node over the search {node:.3e} kWh (trials / node = "
            f"{trials / node:.3f}); split among trials {attributed:.3e} kWh"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run-dir", type=Path, default=Path("runs/fidelity"))
    parser.add_argument("--rounds", type=int, default=7, help="alternating rounds of the idle re-timing (>= 5)")
    parser.add_argument("--seconds", type=float, default=2.0, help="seconds of idle timing per model")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args()
    run_search(args.run_dir, args.overrides)
    config = api.load_config(args.run_dir / "config.yaml", check_model=False)
    objectives = dict(config.search.objectives)
    rows = [r for r in read_rows(args.run_dir / RESULTS_FILE) if r[STATUS] == TERMINATED]
    print(f"{len(rows)} finished trials; timing each again idle, in this process, {args.rounds} rounds")
    idle = idle_latencies(args.run_dir, rows, args.rounds, args.seconds)
    project_front = front_ids(rows, objectives, {str(r[TRIAL_ID]): float(r[M.LATENCY_MS]) for r in rows})
    idle_front = front_ids(rows, objectives, {k: v[M.LATENCY_MS] for k, v in idle.items()})
    deviations = print_table(rows, idle, project_front)
    print(f"\nfront figures vs idle: median deviation {statistics.median(deviations):.1%}, "
          f"largest {max(deviations):.1%} ({len(deviations)} trials on the front)")
    print(f"front from the project's figures == front from idle figures: {project_front == idle_front} "
          f"(project {sorted(project_front)}, idle {sorted(idle_front)})")
    for line in energy_lines(args.run_dir, rows):
        print(line)


if __name__ == "__main__":
    main()
