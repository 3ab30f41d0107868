"""Record real learning curves of the quickstart space for ``bench/replay.py``.

Runs a quickstart search with the random sampler and no early stopping, every trial to its
last step (90 steps, so that the replay's first rung at step 10 is a ninth of the training),
its intermediate reports carrying the objectives it would score if it stopped there
(``trial.report_objectives``, every 10 steps), then writes every report of every finished
trial to one small Parquet table (``bench/curves/quickstart-speed.parquet``): one row per report,
with the seconds since the trial started, the sampled ``trial.*`` values, and the search's
configuration and this command in the table's metadata.

    .venv/bin/python bench/record_curves.py [--trials 84] [--run-dir runs/curves]

Hours on a 2-core machine; nothing else should run meanwhile (the recorded seconds are the
replay's clock). Stopped (Ctrl-C, a lost session), the same command continues the search in
``--run-dir`` where it stopped; ``--extract-only`` writes the table of the trials finished so far.
"""

from __future__ import annotations

import argparse
import shlex
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from prunetune.search.replay import write_curves  # noqa: E402

BIN = Path(sys.executable).parent
DEFAULT_OUT = REPO / "bench" / "curves" / "quickstart-speed.parquet"


def search_command(run_dir: Path, trials: int, eval_every: int, steps: int) -> list[str]:
    if (run_dir / "study.db").is_file():  # a recording that stopped: go on where it was
        return [str(BIN / "prunetune"), "search", "--resume", str(run_dir), "--no-wandb"]
    settings = {
        "search.sampler": "random", "search.num_trials": trials, "search.scheduler": "fifo",
        "search.known_good_points": "false", "search.starting_points": "[]", "search.time_budget": "null",
        "search.retime": "off", "search.evaluate_test": "false",
        "trial.max_steps": steps, "trial.eval_every": eval_every, "trial.report_objectives": "true",
    }
    command = [str(BIN / "prunetune"), "search", "quickstart", "--output", str(run_dir), "--no-wandb"]
    for key, value in settings.items():
        command += ["--set", f"{key}={value}"]
    return command


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=84)
    parser.add_argument("--eval-every", type=int, default=10, help="steps between intermediate reports")
    parser.add_argument("--steps", type=int, default=90, help="trial.max_steps of every recorded trial")
    parser.add_argument("--run-dir", type=Path, default=REPO / "runs" / "curves")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--extract-only", action="store_true", help="write the table of an existing run directory")
    args = parser.parse_args()
    command = search_command(args.run_dir, args.trials, args.eval_every, args.steps)
    if not args.extract_only:
        subprocess.run(command, cwd=REPO, check=True)
    recorded = " ".join(["bench/record_curves.py", *map(shlex.quote, sys.argv[1:])])
    table = write_curves(args.run_dir, args.out, command=recorded)
    trials = table.column("trial").unique()
    print(f"{table.num_rows} reports of {len(trials)} trials -> {args.out}")


if __name__ == "__main__":
    main()
