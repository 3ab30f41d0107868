"""How close the latency table's predictions come to measured models, in every runtime.

For each runtime/precision given (default: every CPU serving with a table): the MiniLM-L6
teacher's latency table is measured afresh (nothing cached), then five structures are built at
MiniLM-L6's dimensions (dense; one layer left, first or last; three thinned layers; four mixed
layers), served in that runtime and timed in alternating rounds. Printed per structure: the
table's prediction, the measured latency, measured/predicted, and the predicted and measured
speed-up over the dense model (what ``trial.target_speedup`` asks for) with their ratio.

    .venv/bin/python bench/tables.py [onnxruntime/int8 torch/fp32 openvino/int8 ...]

Batch 1 x 128 tokens, 2 threads. Run it alone on the machine; its CPU model is printed.
"""

from __future__ import annotations

import copy
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tasks import cpu_model  # noqa: E402

DEFAULT = ["torch/fp32", "onnxruntime/fp32", "onnxruntime/int8", "openvino/fp32", "openvino/int8"]
#: name -> (heads per layer, FFN width per layer, layers removed whole)
STRUCTURES = {
    "dense": ([12] * 6, [1536] * 6, []),
    "one layer": ([12, 0, 0, 0, 0, 0], [1536, 0, 0, 0, 0, 0], [1, 2, 3, 4, 5]),
    "last layer": ([0, 0, 0, 0, 0, 12], [0, 0, 0, 0, 0, 1536], [0, 1, 2, 3, 4]),
    "thin 3": ([5, 1, 2, 0, 0, 0], [928, 832, 1152, 0, 0, 0], [3, 4, 5]),
    "mixed 4": ([4, 6, 8, 3, 0, 0], [512, 1024, 768, 256, 0, 0], [4, 5]),
}


def main() -> None:
    import torch
    from transformers import AutoModelForSequenceClassification

    from prunetune.builtins import resolve_model
    from prunetune.trainables.families import family_of
    from prunetune.trainables.families.compaction import compacted_classes, compacted_config
    from prunetune.trainables.measure.latency import measure_alternating
    from prunetune.trainables.measure.latency_table import measure_table, table_key
    from prunetune.trainables.runtimes import RUNTIMES

    torch.set_num_threads(2)
    teacher = AutoModelForSequenceClassification.from_pretrained(resolve_model("minilm-l6"), num_labels=5).eval()
    spec, cpu = family_of(teacher), torch.device("cpu")

    def build(heads, widths, skipped):
        config = compacted_config(copy.deepcopy(teacher.config), spec, heads, widths, skipped_layers=skipped)
        torch.manual_seed(0)
        return compacted_classes(spec)[1](config).eval()

    print(f"CPU: {cpu_model()}, 2 threads, batch 1 x 128 tokens")
    worst = {}
    for serving in sys.argv[1:] or DEFAULT:
        runtime, precision = serving.split("/")
        key = table_key(teacher, runtime=runtime, precision=precision, device=cpu, batch_size=1, seq_len=128,
                        threads=2)
        started = time.perf_counter()
        table = measure_table(teacher, key, device=cpu, min_width=32)
        seconds = time.perf_counter() - started
        with tempfile.TemporaryDirectory() as work:
            models = {name: RUNTIMES[runtime].serve(build(*structure), precision=precision, device=cpu, threads=2,
                                                    work_dir=f"{work}/{index}").model
                      for index, (name, structure) in enumerate(STRUCTURES.items())}
            timed = measure_alternating(models, batch_size=1, seq_len=128, vocab_size=teacher.config.vocab_size,
                                        device=cpu, min_run_time=5, threads=2, rounds=5, max_spread=0.1)
        dense = timed["dense"].median_ms
        print(f"\n{serving}: table measured in {seconds:.0f} s; base {table.base_ms:.2f} ms, kept once "
              f"{table.kept_ms:.3f} ms, a removed layer {table.removed_ms:.3f} ms")
        print("| structure | predicted ms | measured ms | measured/predicted | speed-up predicted | measured | ratio |")
        print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
        for name, (heads, widths, _) in STRUCTURES.items():
            predicted, measured = table.predict(heads, widths), timed[name].median_ms
            ratio = (dense / measured) / (table.dense_ms / predicted)
            worst[serving] = max(worst.get(serving, 0.0), abs(ratio - 1))
            print(f"| {name} | {predicted:.2f} | {measured:.2f} | {measured / predicted:.3f} | "
                  f"{table.dense_ms / predicted:.2f}x | {dense / measured:.2f}x | {ratio:.3f} |")
    print("\nlargest |measured/predicted speed-up - 1|: " + ", ".join(f"{k} {v:.1%}" for k, v in worst.items()))


if __name__ == "__main__":
    main()
