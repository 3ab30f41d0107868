"""Does the latency table tell the truth about a search's own students?

Two tables of the search's key (teacher, runtime, precision, latency setting) are measured back
to back, afresh, then the trained students of the run directories given (up to 10) are served in
that runtime and timed in alternating rounds beside the dense teacher (7 rounds): as the trial
shipped them where it served in that runtime and precision, else their structure served from
their weights, as the table's points are. Printed: how far apart the two tables' raw grid
points are, and per student its measured speed-up over the teacher in the same runtime and that
figure over each table's prediction, with the median and range per table and how many students
land within 5%.

    .venv/bin/python bench/table_truth.py onnxruntime/int8 runs/quickstart [more run dirs ...]

The latency setting is the quickstart's (batch 1 x 64 tokens, 1 thread). Run it alone on the
machine; its CPU model is printed.
"""

from __future__ import annotations

import copy
import json
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tasks import cpu_model  # noqa: E402

BATCH, SEQ_LEN, THREADS, MAX_STUDENTS = 1, 64, 1, 10


def students_of(runs: list[Path]) -> list[tuple[Path, str, str]]:
    """(trial directory, runtime, inference precision) of every finished student of the runs."""
    import pandas as pd

    found = []
    for run in runs:
        rows = pd.read_parquet(run / "results.parquet")
        for _, row in rows[rows["status"] == "TERMINATED"].iterrows():
            trial_dir = run / "trials" / str(row["trial_id"])
            if (trial_dir / "model" / "config.json").is_file():
                found.append((trial_dir, str(row.get("trial.runtime")), str(row.get("trial.inference_precision"))))
    return found[:: max(1, len(found) // MAX_STUDENTS)][:MAX_STUDENTS]


def main() -> None:
    import numpy as np
    import torch

    from prunetune.trainables.families.compaction import load_model_dir
    from prunetune.trainables.measure import latency_table as T
    from prunetune.trainables.measure.latency import measure_alternating
    from prunetune.trainables.methods._speed import table_min_width
    from prunetune.trainables.runtimes import runtime_of

    runtime, precision = sys.argv[1].split("/")
    runs = [Path(arg) for arg in sys.argv[2:]]
    torch.set_num_threads(THREADS)
    cpu = torch.device("cpu")
    teacher = load_model_dir(str(next((runs[0] / "teacher").iterdir()) / "model"), device=cpu)
    print(f"CPU: {cpu_model()}; {runtime} {precision}, batch {BATCH} x {SEQ_LEN} tokens, {THREADS} thread(s)")
    key = T.table_key(teacher, runtime=runtime, precision=precision, device=cpu, batch_size=BATCH, seq_len=SEQ_LEN,
                      threads=THREADS)
    tables = []
    for attempt in range(2):
        table = T.measure_table(teacher, key, device=cpu, min_width=table_min_width(teacher))
        tables.append(table)
        print(f"table {attempt + 1}: {table.seconds:.0f} s, base {table.base_ms:.3f} ms, kept {table.kept_ms:.3f} ms, "
              f"dense {table.dense_ms:.3f} ms", flush=True)
    first, second = (np.asarray(t.measured_layer_ms) for t in tables)
    apart = np.abs(first / second - 1)
    print(f"raw grid points of the two tables apart: median {np.median(apart):.1%}, max {apart.max():.1%}")

    served = runtime_of(runtime)
    shapes = {}
    with tempfile.TemporaryDirectory() as work:
        models = {"teacher": served.serve(copy.deepcopy(teacher), precision=precision, device=cpu, threads=THREADS,
                                          work_dir=f"{work}/teacher").model}
        for trial_dir, trained_runtime, trained_precision in students_of(runs):
            name = f"{trial_dir.parent.parent.name}/{trial_dir.name}"
            if (trained_runtime, trained_precision) == (runtime, precision):  # as the trial shipped it
                models[name] = served.load(str(trial_dir / "model"), precision=precision, device=cpu,
                                           threads=THREADS).model
            else:  # its structure, served here as the table's points are
                student = load_model_dir(str(trial_dir / "model"), device=cpu)
                models[name] = served.serve(student, precision=precision, device=cpu, threads=THREADS,
                                            work_dir=f"{work}/{trial_dir.name}").model
            config = json.loads((trial_dir / "model" / "config.json").read_text())
            shapes[name] = (config["layer_heads"], config["layer_intermediate_sizes"])
        timed = measure_alternating(models, batch_size=BATCH, seq_len=SEQ_LEN, vocab_size=teacher.config.vocab_size,
                                    device=cpu, min_run_time=4, threads=THREADS, rounds=7, max_spread=0.1)
    dense = timed["teacher"].median_ms
    print(f"teacher: {dense:.3f} ms (spread {timed['teacher'].spread:.1%}); {len(shapes)} student(s)")
    ratios: list[list[float]] = [[], []]
    for name, (heads, widths) in shapes.items():
        measured = dense / timed[name].median_ms
        line = f"  {name}: measured {measured:.2f}x (spread {timed[name].spread:.1%})"
        for index, table in enumerate(tables):
            ratio = measured / (table.dense_ms / table.predict(heads, widths))
            ratios[index].append(ratio)
            line += f", measured/predicted table {index + 1}: {ratio:.3f}"
        print(line)
    for index, values in enumerate(ratios):
        if values:
            within = sum(abs(v - 1) <= 0.05 for v in values)
            print(f"table {index + 1}: measured/predicted median {statistics.median(values):.3f} "
                  f"({min(values):.3f} to {max(values):.3f}); within 5%: {within} of {len(values)}")


if __name__ == "__main__":
    main()
