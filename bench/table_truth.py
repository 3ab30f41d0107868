"""Does the latency table tell the truth about a search's own students?

Two tables of the search's key (teacher, runtime, precision, latency setting) are measured back
to back, afresh, then every trained student of the run directories given is served in that
runtime and timed in alternating rounds beside the dense teacher (7 rounds). Printed: how far
apart the two tables' raw grid points are, and per student its measured speed-up over the
teacher in the same runtime and that figure over each table's prediction, with the median and
range per table and how many students land within 5%.

    .venv/bin/python bench/table_truth.py onnxruntime/int8 runs/quickstart [more run dirs ...]

The latency setting is the quickstart's (batch 1 x 64 tokens, 1 thread); students of another
runtime or precision than the one named are skipped. Run it alone on the machine; its CPU model
is printed.
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


def students_of(runs: list[Path], runtime: str, precision: str) -> list[Path]:
    found = []
    for run in runs:
        for trial_dir in sorted((run / "trials").iterdir()):
            result_file, config_file = trial_dir / "result.json", trial_dir / "model" / "config.json"
            if not (result_file.is_file() and config_file.is_file()):
                continue
            result = json.loads(result_file.read_text())
            if result.get("trial.runtime", runtime) == runtime and \
                    result.get("trial.inference_precision", precision) == precision:
                found.append(trial_dir)
    return found[:: max(1, len(found) // MAX_STUDENTS)][:MAX_STUDENTS]


def main() -> None:
    import numpy as np
    import torch

    from prunetune.trainables.families.compaction import load_model_dir
    from prunetune.trainables.measure import latency_table as T
    from prunetune.trainables.measure.latency import measure_alternating
    from prunetune.trainables.runtimes import runtime_of

    runtime, precision = sys.argv[1].split("/")
    runs = [Path(arg) for arg in sys.argv[2:]]
    torch.set_num_threads(THREADS)
    cpu = torch.device("cpu")
    teacher = load_model_dir(str(next((runs[0] / "teacher").iterdir()) / "model"), device=cpu)
    print(f"CPU: {cpu_model()}; {runtime} {precision}, batch {BATCH} x {SEQ_LEN} tokens, {THREADS} thread(s)")
    key = T.table_key(teacher, runtime=runtime, precision=precision, device=cpu, batch_size=BATCH, seq_len=SEQ_LEN,
                      threads=THREADS)
    width = max(teacher.config.intermediate_size, 1)
    from prunetune.trainables.methods._speed import ffn_group_size

    tables = []
    for attempt in range(2):
        table = T.measure_table(teacher, key, device=cpu, min_width=ffn_group_size(width))
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
        for trial_dir in students_of(runs, runtime, precision):
            name = f"{trial_dir.parent.parent.name}/{trial_dir.name}"
            models[name] = served.load(str(trial_dir / "model"), precision=precision, device=cpu, threads=THREADS).model
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
