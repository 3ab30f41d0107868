"""Record real learning curves of the quickstart space for ``bench/replay.py``.

Runs a quickstart search with the random sampler and no early stopping, every trial to its
last step, its intermediate reports carrying the objectives it would score if it stopped
there (``trial.report_objectives``), then writes every report of every trial to one small
Parquet table (``bench/curves/quickstart.parquet``): one row per report, with the seconds
since the trial started, the sampled ``trial.*`` values, and the search's configuration and
this command in the table's metadata.

    .venv/bin/python bench/record_curves.py [--trials 84] [--run-dir runs/curves]

About 40 minutes for 84 trials on a 2-core machine; nothing else should run meanwhile (the
recorded seconds are the replay's clock).
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
DEFAULT_OUT = REPO / "bench" / "curves" / "quickstart.parquet"


def search_command(run_dir: Path, trials: int, eval_every: int) -> list[str]:
    return [str(BIN / "prunetune"), "search", "quickstart", "--output", str(run_dir), "--no-wandb",
            "--set", "search.sampler=random", "--set", f"search.num_trials={trials}",
            "--set", "search.known_good_points=false", "--set", "search.retime=off",
            "--set", f"trial.eval_every={eval_every}", "--set", "trial.report_objectives=true"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=84)
    parser.add_argument("--eval-every", type=int, default=10, help="steps between intermediate reports")
    parser.add_argument("--run-dir", type=Path, default=REPO / "runs" / "curves")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--extract-only", action="store_true", help="write the table of an existing run directory")
    args = parser.parse_args()
    command = search_command(args.run_dir, args.trials, args.eval_every)
    if not args.extract_only:
        subprocess.run(command, cwd=REPO, check=True)
    recorded = " ".join(["bench/record_curves.py", *map(shlex.quote, sys.argv[1:])])
    table = write_curves(args.run_dir, args.out, command=recorded)
    trials = table.column("trial").unique()
    print(f"{table.num_rows} reports of {len(trials)} trials -> {args.out}")


if __name__ == "__main__":
    main()
