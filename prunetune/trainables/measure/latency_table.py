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

The machine's speed drifts over the minutes a table takes (a shared CPU, its clock, what
else just ran), and a table whose small shapes were timed in a fast moment and its dense
corner in a slow one promises speed-ups that every trial of the search then misses by the
same factor. And a burst of a few seconds moves whatever is timed during it: timed row by
row, a whole row of the grid (every shape with one head count) came out 10-20% slow or fast
against a second table, which no fit can tell from a real cost, and a search whose students
all kept 6 heads was promised speed-ups 14% too high. So the grid is timed in groups that
hold one point of each row and each column (its wrapped diagonals), each group in
alternating rounds with the dense uniform model; a burst then moves one point per row and
per column, which the fit below spreads thin, and the dense model's trend over the groups
(log-linear, fitted robustly) is divided out of every point as the machine's drift. The
trend, not each group's own dense timing: that is as noisy as any point.

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
import statistics
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
#: Timing per grid point (the points themselves are what the table averages), over GROUP_ROUNDS
#: alternating rounds with its group's anchors: finer rounds cancel shorter bursts on the machine.
POINT_RUN_TIME = 0.3
GROUP_ROUNDS = 4
#: Bumped when the way tables are measured changes, so that old caches are not read.
TABLE_VERSION = 6


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


def grid(maximum: int, points: int, minimum: int = 1, *, step: int = 1) -> tuple[int, ...]:
    """``points`` integers spread from ``minimum`` to ``maximum`` (fewer when the range is short),
    each between the ends rounded to a multiple of ``step``.

    The FFN widths a pruner reaches are multiples of its group size, and a grid point between
    them is a shape no student has: in PyTorch int8 (FBGEMM) widths such as 283 or 1035 ran
    slower per neuron than the aligned widths around them, and a table timed on them predicted
    every student's speed-up about 6% too low here.
    """
    if maximum <= minimum:
        return (maximum,)
    count = min(points, maximum - minimum + 1)
    spread = (minimum + (maximum - minimum) * k / (count - 1) for k in range(1, count - 1))
    inner = {min(max(step * round(value / step), minimum), maximum) for value in spread}
    return tuple(sorted({minimum, maximum, *inner}))


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
                  point_run_time: float | None = None) -> LatencyTable:
    """Time the grid (see the module docstring); every point is served as the trial serves its student.

    The grid is timed in groups of one point per row and column (``latin_groups``), each group
    in alternating rounds with four anchors: the dense uniform model, the model without layers,
    the model that keeps one dense layer and the one that removes every layer. The dense
    anchor's trend over the groups is the machine's drift, taken out of every figure of its group.
    """
    from prunetune.trainables.measure.latency import timing_slot
    from prunetune.trainables.runtimes import runtime_of

    point_run_time = POINT_RUN_TIME if point_run_time is None else point_run_time
    started = time.perf_counter()
    # Grouped-query attention loses whole groups: its head counts are multiples of the group size.
    group = _group_size(model)
    heads = tuple(group * units for units in grid(key.num_heads // group, HEAD_POINTS))
    widths = grid(key.ffn_width, WIDTH_POINTS, minimum=min_width, step=min_width)
    layers = key.num_layers
    dense_shape = (key.num_heads, key.ffn_width)

    # One timing slot for the whole table: no other measurement on the node interleaves with it.
    with tempfile.TemporaryDirectory(prefix="prunetune-table-") as work, timing_slot():
        def serve(name: str, **shape):
            candidate = uniform_model(model, **shape)
            return runtime_of(key.runtime).serve(candidate, precision=key.precision, device=device,
                                                 threads=key.threads, work_dir=f"{work}/{name}")

        anchors = _Anchors(
            dense=serve("dense", layers=layers, heads=dense_shape[0], width=dense_shape[1]),
            base=serve("base", layers=0, heads=1, width=1),
            one_layer=serve("one_layer", layers=layers, heads=dense_shape[0], width=dense_shape[1], kept=1),
            removed=serve("removed", layers=layers, heads=0, width=0),
            key=key, vocab_size=int(model.config.vocab_size))
        timed: dict[tuple[int, int], tuple[float, int]] = {}  # (heads, width) -> (milliseconds, its group)
        for index, group in enumerate(latin_groups(len(heads), len(widths))):
            shapes = {(heads[i], widths[j]) for i, j in group} - {dense_shape}  # the dense corner is an anchor
            points = {f"{h}x{w}": serve(f"{h}x{w}", layers=layers, heads=h, width=w) for h, w in shapes}
            group_ms = anchors.time_group(points, run_time=point_run_time)
            timed.update({(h, w): (group_ms[f"{h}x{w}"], index) for h, w in shapes})
            del points  # a group's served models and files go before the next group's are built
            _remove_served(work, keep=anchors.names)
    drift = anchors.drift()
    base = anchors.corrected("base", drift)
    dense = anchors.corrected("dense", drift)

    def per_layer(h: int, w: int) -> float:
        """Divided by the machine's speed while its group was timed; the one-off cost spread over the layers."""
        ms = dense if (h, w) == dense_shape else timed[h, w][0] / drift[timed[h, w][1]]
        return max((ms - base) / layers, 0.0)

    measured = tuple(tuple(per_layer(h, w) for w in widths) for h in heads)
    removed = max((anchors.corrected("removed", drift) - base) / layers, 0.0)
    kept = _kept_ms(one_layer=anchors.corrected("one_layer", drift) - base, dense=dense - base, removed=removed,
                    layers=layers)
    layer_ms = tuple(tuple(max(value - kept / layers, 0.0) for value in row) for row in additive_fit(measured))
    return LatencyTable(key, heads, widths, layer_ms, base, removed, seconds=time.perf_counter() - started,
                        kept_ms=kept, measured_layer_ms=measured)


def latin_groups(rows: int, columns: int) -> list[list[tuple[int, int]]]:
    """The grid's (row, column) points in groups timed together: the wrapped diagonals, so that a
    group holds at most one point of each row and of each column.

    A burst on the machine while one group is timed then moves one point of each head count and
    of each width, which the additive fit spreads over the grid, instead of a whole row (every
    shape with that head count) at once.
    """
    size = max(rows, columns)
    return [[(i, j) for i in range(rows) for j in range(columns) if (j - i) % size == k] for k in range(size)]


def _kept_ms(*, one_layer: float, dense: float, removed: float, layers: int) -> float:
    """The one-off cost of keeping any layer, from two models timed beside the model without layers.

    Above that model, the dense one costs ``kept + L * layer`` and the one with a single dense
    layer (the others removed) ``kept + layer + (L - 1) * removed``; their difference gives the
    layer and then ``kept``, both from timings of the same rounds and none from the grid's fit.
    """
    if layers < 2:
        return 0.0
    layer = (dense - one_layer) / (layers - 1) + removed
    return max(one_layer - layer - (layers - 1) * removed, 0.0)


def _remove_served(work: str, *, keep: tuple[str, ...]) -> None:
    import shutil

    for path in Path(work).iterdir():
        if path.name not in keep:
            shutil.rmtree(path, ignore_errors=True)


class _Anchors:
    """The models timed in every group of grid points, in the same alternating rounds: the dense
    uniform model (whose timings over the groups track the machine's speed), the model without
    layers, and the two that give the costs beside the grid (one dense layer kept; every layer
    removed)."""

    def __init__(self, *, key: TableKey, vocab_size: int, **served):
        self.served = served
        self.names = tuple(served)
        self.key, self.vocab_size = key, vocab_size
        self.timed: dict[str, list[float]] = {name: [] for name in served}

    def time_group(self, points: dict[str, Any], *, run_time: float) -> dict[str, float]:
        """Median milliseconds of each point and anchor, all timed in the same alternating rounds."""
        from prunetune.trainables.measure.latency import measure_alternating

        served = {**self.served, **points}
        timed = measure_alternating({name: each.model for name, each in served.items()},
                                    batch_size=self.key.batch_size, seq_len=self.key.seq_len,
                                    vocab_size=self.vocab_size, device=self.served["dense"].device,
                                    min_run_time=run_time, threads=self.key.threads, rounds=GROUP_ROUNDS,
                                    max_spread=1.0)
        for name in self.names:
            self.timed[name].append(timed[name].median_ms)
        return {name: latency.median_ms for name, latency in timed.items()}

    def drift(self) -> list[float]:
        """Each group's speed factor: the dense anchor's trend over the groups (log-linear,
        Theil-Sen), 1 at the middle group.

        The trend, not each group's own anchor: one anchor timing is as noisy as one point (off by
        up to 20% here); the trend follows a machine that slows down or speeds up over the table
        and is not moved by one noisy group.
        """
        import numpy as np
        from scipy.stats import theilslopes

        dense = np.log(np.asarray(self.timed["dense"], dtype=float))
        if len(dense) < 3:
            return [1.0] * len(dense)
        groups = np.arange(len(dense), dtype=float)
        slope = theilslopes(dense, groups).slope
        return [float(factor) for factor in np.exp(slope * (groups - groups.mean()))]

    def corrected(self, name: str, drift: list[float]) -> float:
        """An anchor's median over the groups, each group's timing divided by its drift factor."""
        return statistics.median(ms / factor for ms, factor in zip(self.timed[name], drift))


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
