"""A per-layer latency table: what one encoder layer costs with h heads and an FFN of width w.

Pruning to a speed needs to know what each removal saves. Latency is far from linear in
what is removed (a layer's fixed costs, GEMM shapes, the runtime's fused kernels), so it
is measured, the way ZipLM and Kwon et al. do: for each point of a grid of head counts x
FFN widths, a model whose every layer has that shape is built (random weights: latency
does not depend on their values) and timed in the trial's runtime and precision, beside
a model without layers; a layer's cost is the difference over the number of layers.
Timing whole models instead of a lone layer keeps the runtime's per-call overhead out of
the per-layer figures and the figures above the timer's noise.

Between grid points the table interpolates bilinearly. Beside the grid, the table holds
what a removed layer still costs (a skipped layer: next to nothing, the encoder's loop),
timed the same way, and what a model pays once as soon as it keeps any layer: the
preparation of the attention mask, which a graph without layers drops (ONNX Runtime and
OpenVINO remove what nothing reads). A uniform model spreads that one-off cost over its
layers, so a table without it predicted a model of one or two layers 4-6% too fast in ONNX
Runtime int8 here; it is measured on a model with one dense layer and taken out of the grid.
A model's predicted latency is the cost without layers, plus the one-off cost when a layer
is kept, plus each layer's cost at its own shape.

A grid point is timed for a fraction of a second, and one point alone can be off by 15-20%
(two tables of the same key measured minutes apart on an idle machine here differed by a
median 4% and up to 19% per point). The worst point to be off is the dense corner: it is the
denominator of every predicted speed-up, and a corner timed 30% slow made the table promise
speed-ups that measured 0.76 of it. So the grid is not read raw: a layer runs its attention
block and then its FFN block, so its cost is the sum of a part that depends on the head
count alone and a part that depends on the FFN width alone, and the table fits that sum to
every point of the grid by least squares (the row and column effects of a two-way table).
Every point, the corner too, is then estimated from its whole row and column (13 timings on
the 7 x 7 grid), not from one. Over the trials of a search in ONNX Runtime int8 here, the
fit brought measured/predicted speed-up from 0.82-1.08 to 0.96-1.07 (tables measured three
times). The raw figures stay in the file beside the fitted ones.

A table is measured once per model shape, runtime, precision, device kind, batch size,
sequence length and thread count, inside the timing slot, and cached as JSON beside the
teacher (every trial on the node reads the same file; a lock makes the first one
measure it).
"""

from __future__ import annotations

import bisect
import copy
import hashlib
import json
import platform
import tempfile
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import torch
from filelock import FileLock

from prunetune.errors import ConfigError

TABLE_DIR = "latency-tables"
#: Grid points along each axis (both ends included); a model with fewer heads uses them all.
HEAD_POINTS = 7
WIDTH_POINTS = 7
#: Timing per grid point, over two rounds (the points themselves are what the table averages).
POINT_RUN_TIME = 0.3
#: Bumped when the way tables are measured changes, so that old caches are not read.
TABLE_VERSION = 5


@dataclass(frozen=True)
class TableKey:
    """What a table's figures depend on."""

    family: str
    hidden_size: int
    num_heads: int
    head_size: int
    ffn_width: int
    num_layers: int
    runtime: str
    precision: str
    device: str  # device kind: the CPU model or the GPU name
    batch_size: int
    seq_len: int
    threads: int
    version: int = TABLE_VERSION

    def digest(self) -> str:
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class LatencyTable:
    """Per-layer milliseconds on a grid of head counts x FFN widths, plus the cost without layers."""

    key: TableKey
    heads: tuple[int, ...]
    widths: tuple[int, ...]
    layer_ms: tuple[tuple[float, ...], ...]  # [head index][width index]
    base_ms: float  # embeddings, classifier head, runtime overhead: a model whose layers are all removed
    removed_ms: float  # a layer removed whole (skipped)
    seconds: float = 0.0  # how long measuring it took
    kept_ms: float = 0.0  # paid once by a model that keeps any layer (the attention mask's preparation)
    measured_layer_ms: tuple[tuple[float, ...], ...] = ()  # the grid as timed, before the additive fit

    def layer(self, heads: float, width: float) -> float:
        """Milliseconds of one layer with ``heads`` heads and ``width`` FFN neurons (bilinear);
        ``removed_ms`` for a layer with neither."""
        if heads == 0 and width == 0:
            return self.removed_ms
        i, a = _bracket(self.heads, heads)
        j, b = _bracket(self.widths, width)
        grid = self.layer_ms
        low = grid[i][j] * (1 - b) + grid[i][j + 1] * b if b else grid[i][j]
        if not a:
            return low
        high = grid[i + 1][j] * (1 - b) + grid[i + 1][j + 1] * b if b else grid[i + 1][j]
        return low * (1 - a) + high * a

    def predict(self, layer_heads: list[int], layer_widths: list[int]) -> float:
        """Predicted latency (ms) of a model whose layers have these heads and FFN widths."""
        kept = any(h or w for h, w in zip(layer_heads, layer_widths))
        return self.base_ms + (self.kept_ms if kept else 0.0) + sum(
            self.layer(h, w) for h, w in zip(layer_heads, layer_widths))

    @property
    def dense_ms(self) -> float:
        return self.predict([self.key.num_heads] * self.key.num_layers, [self.key.ffn_width] * self.key.num_layers)

    def fastest_ms(self, min_heads: int, min_width: int) -> float:
        """The prediction with one layer at ``min_heads`` heads and ``min_width`` FFN neurons, the others removed."""
        others = self.key.num_layers - 1
        return self.predict([min_heads] + [0] * others, [min_width] + [0] * others)

    def max_speedup(self, min_heads: int = 1) -> float:
        """The most the table allows: dense against :meth:`fastest_ms` at the narrowest FFN it covers."""
        return self.dense_ms / self.fastest_ms(min_heads, self.widths[0])

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "key": asdict(self.key)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "LatencyTable":
        return cls(key=TableKey(**data["key"]), heads=tuple(data["heads"]), widths=tuple(data["widths"]),
                   layer_ms=tuple(tuple(row) for row in data["layer_ms"]), base_ms=float(data["base_ms"]),
                   removed_ms=float(data["removed_ms"]), seconds=float(data.get("seconds", 0.0)),
                   kept_ms=float(data.get("kept_ms", 0.0)),
                   measured_layer_ms=tuple(tuple(row) for row in data.get("measured_layer_ms", ())))


def _bracket(points: tuple[int, ...], value: float) -> tuple[int, float]:
    """(index of the grid point at or below ``value``, fraction of the way to the next one).

    Outside the grid the nearest end is used (the grid covers 1 head and the smallest group
    up to the dense model, which is all a pruner can reach).
    """
    if value <= points[0]:
        return 0, 0.0
    if value >= points[-1]:
        return len(points) - 1, 0.0
    i = bisect.bisect_right(points, value) - 1
    return i, (value - points[i]) / (points[i + 1] - points[i])


def grid(maximum: int, points: int, minimum: int = 1) -> tuple[int, ...]:
    """``points`` integers spread from ``minimum`` to ``maximum`` (fewer when the range is short)."""
    if maximum <= minimum:
        return (maximum,)
    count = min(points, maximum - minimum + 1)
    return tuple(sorted({round(minimum + (maximum - minimum) * k / (count - 1)) for k in range(count)}))


def device_kind(device: torch.device) -> str:
    """What a latency depends on about the device: its model name."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def hardware_of(device: torch.device) -> str:
    """The hardware a latency was measured on, as results and the model card state it: the GPU and
    its memory, or the CPU model and how many CPUs the machine has."""
    import os

    if device.type == "cuda":
        memory = torch.cuda.get_device_properties(device).total_memory / 2**30
        return f"{device_kind(device)} ({memory:.0f} GiB)"
    return f"{device_kind(device)} ({os.cpu_count()} CPUs)"


# --------------------------------------------------------------------------- building


def table_key(model: torch.nn.Module, *, runtime: str, precision: str, device: torch.device, batch_size: int,
              seq_len: int, threads: int) -> TableKey:
    from prunetune.trainables.families import family_of
    from prunetune.trainables.families._modeling import layer_views

    views = layer_views(model, family_of(model), split=False)
    return TableKey(family=family_of(model).name, hidden_size=int(model.config.hidden_size),
                    num_heads=max(v.num_heads for v in views), head_size=views[0].head_size,
                    ffn_width=max(v.ffn_width for v in views), num_layers=len(views), runtime=runtime,
                    precision=precision, device=device_kind(device), batch_size=batch_size, seq_len=seq_len,
                    threads=threads)


def uniform_model(model: torch.nn.Module, *, layers: int, heads: int, width: int,
                  kept: int | None = None) -> torch.nn.Module:
    """A randomly initialised model of ``model``'s family and dimensions with ``layers`` layers,
    each with ``heads`` heads and ``width`` FFN neurons; with neither, each layer removed (skipped).
    With ``kept``, only the first ``kept`` layers have that shape and the others are removed."""
    from prunetune.trainables.families import family_of
    from prunetune.trainables.families.compaction import (
        compacted_classes,
        compacted_config,
    )

    spec = family_of(model)
    shape = copy.deepcopy(model.config)
    if layers == 0:
        # Not every encoder runs with no layers (DeBERTa's returns nothing; ModernBERT's config
        # lists one attention kind per layer): the model without layers is every layer removed.
        layers, heads, width = int(getattr(shape, spec.config_keys.num_layers)), 0, 0
    removed = range(layers) if heads == 0 and width == 0 else range(kept or layers, layers)
    if spec.attention_kinds:  # one kind per layer (ModernBERT's sliding and full layers), in the family's order
        kinds = list(getattr(shape, spec.attention_kinds))
        setattr(shape, spec.attention_kinds, [kinds[i % len(kinds)] for i in range(layers)])
    setattr(shape, spec.config_keys.num_layers, layers)
    kept_layers = layers if kept is None else kept
    layer_heads = [heads if i < kept_layers else 0 for i in range(layers)]
    layer_widths = [width if i < kept_layers else 0 for i in range(layers)]
    config = compacted_config(shape, spec, layer_heads, layer_widths, skipped_layers=list(removed))
    _, model_class = compacted_classes(spec)
    torch.manual_seed(0)
    return model_class(config).eval()


def _group_size(model: torch.nn.Module) -> int:
    from prunetune.trainables.families import family_of
    from prunetune.trainables.families._modeling import layer_views

    return layer_views(model, family_of(model), split=False)[0].group_size


def measure_table(model: torch.nn.Module, key: TableKey, *, device: torch.device, min_width: int = 1,
                  point_run_time: float = POINT_RUN_TIME) -> LatencyTable:
    """Time the grid (see the module docstring); every point is served as the trial serves its student."""
    from prunetune.trainables.measure.latency import measure_alternating, timing_slot
    from prunetune.trainables.runtimes import runtime_of

    started = time.perf_counter()
    # Grouped-query attention loses whole groups: its head counts are multiples of the group size.
    group = _group_size(model)
    heads = tuple(group * units for units in grid(key.num_heads // group, HEAD_POINTS))
    widths = grid(key.ffn_width, WIDTH_POINTS, minimum=min_width)

    def milliseconds(layers: int, h: int, w: int, *, kept: int | None = None, run_time: float = point_run_time) -> float:
        candidate = uniform_model(model, layers=layers, heads=h, width=w, kept=kept)
        with tempfile.TemporaryDirectory(prefix="prunetune-table-") as work:
            served = runtime_of(key.runtime).serve(candidate, precision=key.precision, device=device,
                                                   threads=key.threads, work_dir=work)
            timed = measure_alternating({"model": served.model}, batch_size=key.batch_size, seq_len=key.seq_len,
                                        vocab_size=int(model.config.vocab_size), device=served.device,
                                        min_run_time=run_time, threads=key.threads, rounds=2,
                                        max_spread=1.0)
        return timed["model"].median_ms

    def per_layer(h: int, w: int) -> float:
        return max((milliseconds(key.num_layers, h, w) - base) / key.num_layers, 0.0)

    with timing_slot():  # one slot for the whole table: no other measurement interleaves with it
        # The two points every prediction uses get longer timing than a grid point.
        base = milliseconds(0, 1, 1, run_time=3 * point_run_time)
        measured = tuple(tuple(per_layer(h, w) for w in widths) for h in heads)  # with the one-off cost spread
        removed = per_layer(0, 0)
        one_layer = milliseconds(key.num_layers, key.num_heads, key.ffn_width, kept=1, run_time=3 * point_run_time)
    spread = additive_fit(measured)
    layers = key.num_layers
    # one_layer = base + kept + dense + (L-1) removed, and each grid point holds kept/L beside its layer.
    kept = max(0.0, (one_layer - base - spread[-1][-1] - (layers - 1) * removed) * layers / (layers - 1)) \
        if layers > 1 else 0.0
    layer_ms = tuple(tuple(max(value - kept / layers, 0.0) for value in row) for row in spread)
    return LatencyTable(key, heads, widths, layer_ms, base, removed, seconds=time.perf_counter() - started,
                        kept_ms=kept, measured_layer_ms=measured)


def additive_fit(grid: tuple[tuple[float, ...], ...]) -> tuple[tuple[float, ...], ...]:
    """The least-squares fit of ``grid[i][j] = heads_part[i] + width_part[j]`` (see the module docstring).

    On a complete two-way grid the fit is the row mean plus the column mean minus the grand
    mean; a grid with one row or one column is returned as it is (nothing to average over).
    """
    import numpy as np

    values = np.asarray(grid, dtype=float)
    if values.ndim != 2 or min(values.shape) < 2:
        return grid
    fitted = values.mean(axis=1, keepdims=True) + values.mean(axis=0, keepdims=True) - values.mean()
    return tuple(tuple(float(value) for value in row) for row in np.maximum(fitted, 0.0))


def cached_table(model: torch.nn.Module, cache_dir: str | Path, *, runtime: str, precision: str,
                 device: torch.device, batch_size: int, seq_len: int, threads: int,
                 min_width: int = 1, measurer=None) -> LatencyTable:
    """The table for this model, runtime, precision, device and latency setting; measured on first use.

    With a ``measurer`` (``search.measure_on``) the table is measured on a deploy node and cached
    here under the deploy nodes' name, whatever this node's hardware.
    """
    key = table_key(model, runtime=runtime, precision=precision, device=device, batch_size=batch_size,
                    seq_len=seq_len, threads=threads)
    if measurer is not None:
        key = replace(key, device=measurer.describe())
    directory = Path(cache_dir) / TABLE_DIR
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{key.digest()}.json"
    with FileLock(str(path) + ".lock"):
        if path.is_file():
            try:
                table = LatencyTable.from_json(json.loads(path.read_text()))
            except (ValueError, KeyError, TypeError):
                table = None  # unreadable: measured again
            if table is not None and table.key == key:
                return table
        if measurer is None:
            table = measure_table(model, key, device=device, min_width=min_width)
        else:
            measured = measurer.table(model, key.digest(), runtime=runtime, precision=precision, device=device,
                                      batch_size=batch_size, seq_len=seq_len, threads=threads, min_width=min_width)
            table = replace(LatencyTable.from_json(measured), key=key)
        staging = path.with_suffix(".json.partial")  # a crash mid-write never leaves a broken table behind
        staging.write_text(json.dumps(table.to_json(), indent=2))
        staging.replace(path)
    return table


def check_reachable(table: LatencyTable, target_speedup: float, *, min_heads: int) -> None:
    """Refuse a target the table says no structure can reach."""
    best, min_width = table.max_speedup(min_heads), table.widths[0]
    if target_speedup > best:
        raise ConfigError(
            f"trial.target_speedup = {target_speedup}: unreachable; removing {table.key.num_layers - 1} of the "
            f"{table.key.num_layers} layers and keeping only {min_heads} head(s) and {min_width} FFN neuron(s) in "
            f"the last one gives at most {best:.2f}x in "
            f"{table.key.runtime} at {table.key.precision} (latency table, batch {table.key.batch_size} x "
            f"{table.key.seq_len} tokens)")
