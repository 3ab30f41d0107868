"""Pruning to a speed: the per-layer latency table, the greedy choice of structure, and a target met."""

from __future__ import annotations

import json

import pytest
import torch

from prunetune.errors import ConfigError
from prunetune.trainables.families.compaction import compact_and_verify
from prunetune.trainables.measure import latency_table as T
from prunetune.trainables.measure.latency import measure_alternating
from prunetune.trainables.methods._speed import choose_structure, target_ms
from tests.models import tiny_classifier


@pytest.fixture(autouse=True)
def few_runs_per_table_point(monkeypatch):
    """Tables here are timed for 0.02 s per point, in one round per group, three forwards at least: their
    figures are read for how a table is built and used, and every timed run of every model costs
    the timer's calibration (about 25 ms) whatever its run time."""
    from prunetune.trainables.measure import latency as L

    monkeypatch.setattr(T, "GROUP_ROUNDS", 1)
    monkeypatch.setattr(T, "POINT_RUN_TIME", 0.02)
    monkeypatch.setattr(L, "MIN_LATENCY_RUNS", 3)

# Figures of time and energy: run alone, never beside another test process (`make test`).
pytestmark = pytest.mark.serial

CPU = torch.device("cpu")


def synthetic_table(heads=(1, 2, 4), widths=(8, 32, 64), *, per_head=1.0, per_neuron=0.05, fixed=0.5, layers=2,
                    removed=0.1):
    """A table whose layer cost is fixed + per_head * heads + per_neuron * width (exactly bilinear),
    and ``removed`` for a removed layer."""
    key = T.TableKey(family="bert", hidden_size=32, num_heads=heads[-1], head_size=8, ffn_width=widths[-1],
                     num_layers=layers, runtime="torch", precision="fp32", device="test", batch_size=1, seq_len=16,
                     threads=1)
    grid = tuple(tuple(fixed + per_head * h + per_neuron * w for w in widths) for h in heads)
    return T.LatencyTable(key, tuple(heads), tuple(widths), grid, base_ms=1.0, removed_ms=removed)


def test_interpolation_is_exact_on_the_grid_and_bilinear_between():
    table = synthetic_table()
    assert table.layer(2, 32) == pytest.approx(0.5 + 2 + 1.6)
    assert table.layer(3, 48) == pytest.approx(0.5 + 3 + 2.4)  # between grid points, on a linear surface
    assert table.layer(1, 4) == table.layer(1, 8)  # outside the grid: the nearest end
    assert table.layer(0, 0) == 0.1  # a removed layer
    assert table.predict([4, 4], [64, 64]) == pytest.approx(1.0 + 2 * (0.5 + 4 + 3.2)) == table.dense_ms


def test_a_model_that_keeps_any_layer_pays_the_one_off_cost_once():
    from dataclasses import replace

    table = replace(synthetic_table(), kept_ms=0.3)
    assert table.predict([0, 0], [0, 0]) == pytest.approx(1.0 + 2 * 0.1)  # every layer removed: no mask to prepare
    assert table.predict([1, 0], [8, 0]) == pytest.approx(1.0 + 0.3 + (0.5 + 1 + 0.4) + 0.1)
    assert table.dense_ms == pytest.approx(1.0 + 0.3 + 2 * (0.5 + 4 + 3.2))
    assert T.LatencyTable.from_json(table.to_json()) == table


def test_the_table_takes_the_one_off_cost_out_of_its_uniform_layers(tiny_family_dir, monkeypatch):
    """Timed models cost base + kept + each layer: the grid holds the layers alone, kept_ms the rest."""
    import torch
    from transformers import AutoModelForSequenceClassification

    from prunetune.trainables.measure import latency as L

    model = AutoModelForSequenceClassification.from_pretrained(str(tiny_family_dir("bert")), num_labels=2)
    true_layer, base, kept = 2.0, 1.0, 0.6

    def milliseconds(served):
        config = served.config
        layers = [h or w for h, w in zip(config.layer_heads, config.layer_intermediate_sizes)]
        return base + (kept if any(layers) else 0.0) + true_layer * sum(1 for x in layers if x)

    def fake_timing(models, **kwargs):
        return {name: L.Latency(median_ms=milliseconds(served), p95_ms=milliseconds(served), runs=1)
                for name, served in models.items()}

    monkeypatch.setattr(L, "measure_alternating", fake_timing)
    key = T.table_key(model, runtime="torch", precision="fp32", device=torch.device("cpu"), batch_size=1, seq_len=8,
                      threads=1)
    table = T.measure_table(model, key, device=torch.device("cpu"))
    assert table.kept_ms == pytest.approx(kept)
    assert table.layer(key.num_heads, key.ffn_width) == pytest.approx(true_layer)
    assert table.predict([key.num_heads, 0], [key.ffn_width, 0]) == pytest.approx(base + kept + true_layer)


def test_the_fit_keeps_an_additive_grid_and_spreads_a_single_outlier():
    heads, widths = (1, 2, 4), (8, 32, 64)
    exact = tuple(tuple(0.5 + 1.0 * h + 0.05 * w for w in widths) for h in heads)
    assert [v for row in T.additive_fit(exact) for v in row] == pytest.approx([v for row in exact for v in row])
    slow_corner = tuple(tuple(v * (1.3 if (i, j) == (2, 2) else 1.0) for j, v in enumerate(row))
                        for i, row in enumerate(exact))
    fitted = T.additive_fit(slow_corner)
    raw_error, fitted_error = slow_corner[2][2] / exact[2][2] - 1, fitted[2][2] / exact[2][2] - 1
    assert fitted_error < raw_error * 0.6  # (1/3 + 1/3 - 1/9) of the outlier is left on a 3 x 3 grid
    assert T.additive_fit(((1.0, 2.0, 3.0),)) == ((1.0, 2.0, 3.0),)  # one row: nothing to average over


class LinearCosts:
    """Fake timings of a table's models: a base, then per kept layer a fixed part, a part per head
    and a part per FFN neuron; the model named ``name`` in the n-th call to the timer (from 1)
    multiplied by ``slowdown(n, name)``."""

    per_head, per_neuron, fixed, base = 0.2, 0.01, 0.3, 1.0

    def __init__(self, monkeypatch, slowdown):
        from prunetune.trainables.measure import latency as L

        self.calls = 0

        def timing(models, **kwargs):
            self.calls += 1
            return {name: L.Latency(median_ms=self.ms(list(zip(served.config.layer_heads,
                                                               served.config.layer_intermediate_sizes)))
                                    * slowdown(self.calls, name), p95_ms=1.0, runs=1) for name, served in models.items()}

        monkeypatch.setattr(L, "measure_alternating", timing)

    def ms(self, shapes) -> float:
        return self.base + sum(self.fixed + self.per_head * h + self.per_neuron * w for h, w in shapes if h or w)

    def speedup(self, dense, shapes) -> float:
        return self.ms(dense) / self.ms(shapes)


def predicted_speedup(table, shapes) -> float:
    return table.dense_ms / table.predict(*map(list, zip(*shapes)))


def test_one_slow_grid_point_does_not_decide_the_dense_prediction(tiny_family_dir, monkeypatch):
    """A grid point timed 30% slow moves the table's predictions far less than it is off."""
    from transformers import AutoModelForSequenceClassification

    model = AutoModelForSequenceClassification.from_pretrained(str(tiny_family_dir("bert")), num_labels=2)
    full_heads, full_width = model.config.num_attention_heads, model.config.intermediate_size
    widths = T.grid(full_width, T.WIDTH_POINTS, minimum=8, step=8)
    half = (full_heads, widths[len(widths) // 2])
    # A transient on the machine while that point was timed.
    costs = LinearCosts(monkeypatch, slowdown=lambda call, name: 1.3 if name == f"{half[0]}x{half[1]}" else 1.0)
    key = T.table_key(model, runtime="torch", precision="fp32", device=CPU, batch_size=1, seq_len=8, threads=1)
    table = T.measure_table(model, key, device=CPU, min_width=8)
    layers = key.num_layers
    dense = [(full_heads, full_width)] * layers
    true_layer = (costs.ms([half] * layers) - costs.base) / layers
    assert table.measured_layer_ms[-1][len(table.widths) // 2] > 1.25 * true_layer  # the file keeps what was timed
    for shapes in ([half] * layers, [(1, 8)] + [(0, 0)] * (layers - 1), dense):
        assert predicted_speedup(table, shapes) == pytest.approx(costs.speedup(dense, shapes), rel=0.1), shapes
    assert T.LatencyTable.from_json(table.to_json()) == table


def test_a_machine_that_drifts_while_the_table_is_timed_does_not_move_its_speedups(tiny_family_dir, monkeypatch):
    """Every call to the timer runs 15% slower than the one before (a VM's neighbours waking up):
    the speed-ups the table predicts stay those of an idle machine, since the dense anchor's
    trend over the groups is divided out."""
    from transformers import AutoModelForSequenceClassification

    model = AutoModelForSequenceClassification.from_pretrained(str(tiny_family_dir("bert")), num_labels=2)
    costs = LinearCosts(monkeypatch, slowdown=lambda call, name: 1.15 ** call)
    key = T.table_key(model, runtime="torch", precision="fp32", device=CPU, batch_size=1, seq_len=8, threads=1)
    table = T.measure_table(model, key, device=CPU, min_width=8)
    layers = key.num_layers
    dense = [(model.config.num_attention_heads, model.config.intermediate_size)] * layers
    assert costs.calls > 2
    for shapes in ([(1, 8)] * layers, [(1, 8)] + [(0, 0)] * (layers - 1), [(dense[0][0], 8)] * layers):
        assert predicted_speedup(table, shapes) == pytest.approx(costs.speedup(dense, shapes), rel=0.02), shapes


def test_table_is_measured_once_per_key_and_read_from_the_cache(tmp_path, monkeypatch):
    model = tiny_classifier(layers=2)
    settings = dict(runtime="torch", precision="fp32", device=CPU, batch_size=1, seq_len=8, threads=1, min_width=8)
    measured = []
    real = T.measure_table
    monkeypatch.setattr(T, "measure_table", lambda *a, **k: measured.append(1) or real(*a, point_run_time=0.01, **k))
    first = T.cached_table(model, tmp_path, **settings)
    again = T.cached_table(model, tmp_path, **settings)
    assert len(measured) == 1 and again == first
    assert first.heads == (1, 2, 3, 4) and first.widths[0] == 8 and first.widths[-1] == 64
    assert len(first.layer_ms) == 4 and all(len(row) == len(first.widths) for row in first.layer_ms)
    assert first.key.num_layers == 2 and first.key.device == T.device_kind(CPU)
    assert first.removed_ms >= 0 and first.layer(0, 0) == first.removed_ms
    # Another sequence length is another key, another table; the file holds its key.
    T.cached_table(model, tmp_path, **{**settings, "seq_len": 16})
    assert len(measured) == 2
    files = sorted((tmp_path / T.TABLE_DIR).glob("*.json"))
    assert {json.loads(f.read_text())["key"]["seq_len"] for f in files} == {8, 16}


def test_greedy_structure_removes_least_importance_per_millisecond_until_the_target():
    table = synthetic_table(per_head=1.0, per_neuron=0.05)
    # Layer 0's heads matter little, layer 1's FFN groups matter little.
    heads = [torch.tensor([0.1, 0.2, 0.3, 0.4]), torch.tensor([5.0, 6.0, 7.0, 8.0])]
    groups = [torch.tensor([9.0] * 8), torch.tensor([0.01 * i for i in range(8)])]
    target = table.dense_ms / 1.4
    structure = choose_structure(heads, groups, table=table, target=target, heads_per_unit=1, group_size=8,
                                 widths=[64, 64])
    assert structure.predicted_ms <= target
    assert structure.units[1].all() and structure.groups[0].all()  # the important units stay
    assert not structure.units[0][0] and structure.units[0].sum() >= 1
    assert all(u.any() for u in structure.units)  # no layer is removed for 1.4x
    # However far the target is, one layer stays, with one unit and one group.
    everything = choose_structure(heads, groups, table=table, target=0.0, heads_per_unit=1, group_size=8,
                                  widths=[64, 64])
    assert sorted(int(u.sum()) for u in everything.units) == [0, 1]
    assert sorted(int(g.sum()) for g in everything.groups) == [0, 1]
    assert everything.predicted_ms == pytest.approx(table.fastest_ms(1, 8))


def test_greedy_removes_a_whole_layer_when_its_fixed_cost_is_the_cheapest_saving():
    """Layers cost mostly a fixed 5 ms: thinning them saves little, removing the least important one saves most."""
    table = synthetic_table(per_head=0.1, per_neuron=0.001, fixed=5.0, layers=3, removed=0.2)
    heads = [torch.tensor([1.0, 1.1, 1.2, 1.3]), torch.tensor([0.2, 0.3, 0.2, 0.1]), torch.tensor([2.0] * 4)]
    groups = [torch.tensor([1.0] * 8), torch.tensor([0.1] * 8), torch.tensor([2.0] * 8)]
    target = table.dense_ms * 0.7  # one layer of three is ~6 ms of ~18.6
    structure = choose_structure(heads, groups, table=table, target=target, heads_per_unit=1, group_size=8,
                                 widths=[64, 64, 64])
    assert structure.predicted_ms <= target
    assert [bool(u.any()) for u in structure.units] == [True, False, True]  # layer 1, the least important, goes
    assert not structure.groups[1].any()
    assert structure.units[0].all() and structure.units[2].all()  # nothing else needed to go
    assert structure.predicted_ms == pytest.approx(table.predict([4, 0, 4], [64, 0, 64]))


def test_near_the_target_the_greedy_closes_the_gap_instead_of_overshooting_it():
    """Removing a whole layer is the cheapest per millisecond, but only 0.25 ms are needed: three heads
    do, and the free FFN group taken on the way comes back, as it fits within the target."""
    table = synthetic_table(per_head=0.1, per_neuron=0.001, fixed=5.0, layers=3, removed=0.2)
    heads = [torch.ones(4)] * 3
    groups = [torch.tensor([0.0] + [1.0] * 7)] + [torch.ones(8)] * 2  # one free group (importances start at 0)
    structure = choose_structure(heads, groups, table=table, target=table.dense_ms - 0.25, heads_per_unit=1,
                                 group_size=8, widths=[64, 64, 64])
    assert all(u.any() for u in structure.units)
    assert sum(int(u.sum()) for u in structure.units) == 9 and all(g.all() for g in structure.groups)
    assert structure.predicted_ms == pytest.approx(table.dense_ms - 0.3)


@pytest.mark.parametrize("seed", range(5))
def test_an_overshoot_is_given_back_to_the_layers_left(seed):
    """A removed layer costs nothing, so removing one can overshoot the target by most of a layer:
    the layers left then take back units while the prediction stays within the target."""
    table = synthetic_table(per_head=0.3, per_neuron=0.01, fixed=2.0, layers=3, removed=0.0)
    generator = torch.Generator().manual_seed(seed)
    heads = [torch.rand(4, generator=generator) for _ in range(3)]
    groups = [torch.rand(8, generator=generator) for _ in range(3)]
    target = table.dense_ms * 0.45  # more than one layer's worth, less than two
    structure = choose_structure(heads, groups, table=table, target=target, heads_per_unit=1, group_size=8,
                                 widths=[64, 64, 64])
    assert structure.predicted_ms <= target + 1e-9
    kept = [int(u.sum()) for u in structure.units]
    width = [8 * int(g.sum()) for g in structure.groups]
    assert kept.count(0) >= 1
    slack = target - structure.predicted_ms
    for layer in range(3):  # nothing a layer left gave up would still fit
        if not kept[layer]:
            continue
        now = table.layer(kept[layer], width[layer])
        if kept[layer] < 4:
            assert table.layer(kept[layer] + 1, width[layer]) - now > slack - 1e-9
        if width[layer] < 64:
            assert table.layer(kept[layer], width[layer] + 8) - now > slack - 1e-9


def test_the_schedule_goes_from_dense_to_the_target():
    table = synthetic_table()
    assert target_ms(table, 2.0, 0.0) == pytest.approx(table.dense_ms)
    assert target_ms(table, 2.0, 1.0) == pytest.approx(table.dense_ms / 2.0)


def test_an_unreachable_target_is_refused_with_what_is_reachable():
    table = synthetic_table()
    best = table.dense_ms / table.fastest_ms(1, 8)
    assert table.fastest_ms(1, 8) == pytest.approx(1.0 + table.layer(1, 8) + table.removed_ms)
    assert table.max_speedup() == best
    T.check_reachable(table, best * 0.99, min_heads=1)
    with pytest.raises(ConfigError, match=rf"unreachable.*at most {best:.2f}x"):
        T.check_reachable(table, best * 1.5, min_heads=1)


def test_a_trial_target_the_table_cannot_reach_fails_before_training(tiny_config, tmp_path):
    from prunetune.trainables.trial import run_trial

    with pytest.raises(ConfigError, match="trial.target_speedup = 1000.0: unreachable"):
        run_trial(tiny_config(target_speedup=1000.0), output_dir=tmp_path)


def test_a_target_speedup_is_met_within_the_tables_error(tmp_path, monkeypatch):
    """Magnitude pruning to 1.6x on a small model whose compute dominates its overhead."""
    from prunetune.trainables.families import family_of
    from prunetune.trainables.methods._block import (
        BlockPruner,
        MagnitudeScorer,
        SpeedTarget,
    )

    torch.set_num_threads(1)
    model = tiny_classifier(layers=2, hidden=256, heads=8, ffn=1024, vocab_size=100, positions=128)
    monkeypatch.setattr(T, "POINT_RUN_TIME", 0.15)  # the drift correction and the fit carry the precision
    table = T.cached_table(model, tmp_path, runtime="torch", precision="fp32", device=CPU, batch_size=1,
                           seq_len=128, threads=1, min_width=32)
    dense = tiny_classifier(layers=2, hidden=256, heads=8, ffn=1024, vocab_size=100, positions=128)
    pruner = BlockPruner(model, family_of(model), scorer=lambda views: MagnitudeScorer(32), block_size=32,
                         sparsity_at=lambda step: 0.0, final_sparsity=None,
                         speed=SpeedTarget(table=table, speedup=1.6, progress_at=lambda step: 1.0))
    compacted, report = compact_and_verify(pruner.finish(model))
    predicted = pruner.metrics()["predicted_speedup"]
    assert predicted >= 1.6
    timed = measure_alternating({"dense": dense, "pruned": compacted}, batch_size=1, seq_len=128, vocab_size=100,
                                device=CPU, min_run_time=1.0, threads=1, rounds=5)
    measured = timed["dense"].median_ms / timed["pruned"].median_ms
    assert measured == pytest.approx(predicted, rel=0.3)
    assert report.heads_after < report.heads_before or report.ffn_after < report.ffn_before


@pytest.mark.parametrize("method", ["movement", "magnitude"])
def test_a_trial_prunes_to_its_target_speedup(tiny_config, tmp_path, monkeypatch, method):
    """A whole trial with the table the tiny model would have if compute dominated (synthetic: exact)."""
    from prunetune import metrics as M
    from prunetune.trainables.methods import _speed
    from prunetune.trainables.trial import run_trial

    table = synthetic_table(heads=(1, 2, 3, 4), widths=(2, 32, 64), per_head=1.0, per_neuron=0.05)
    monkeypatch.setattr(_speed, "cached_table", lambda *args, **kwargs: table)
    reports = []
    metrics = run_trial(tiny_config(method=method, target_speedup=1.8, report_objectives=True),
                        output_dir=tmp_path, report=lambda m, c: reports.append(m))
    assert M.missing_final_keys(metrics) == []
    assert metrics[M.PREDICTED_SPEEDUP] >= 1.8
    heads, widths = metrics[M.LAYER_HEADS], metrics[M.LAYER_FFN]
    assert table.dense_ms / table.predict(heads, widths) == pytest.approx(metrics[M.PREDICTED_SPEEDUP], rel=1e-6)
    assert metrics[M.SPARSITY] > 0.2  # the sparsity is now a result
    rung = reports[0]  # a rung projects the structure the trial would finish with
    assert rung[M.PARAMS] > 0 and rung[M.LATENCY_MS] > 0
    saved = json.loads((tmp_path / "result.json").read_text())
    assert saved["config"]["trial"]["sparsity"] is None and saved["config"]["trial"]["target_speedup"] == 1.8


def test_a_trial_removes_whole_layers_when_the_target_needs_it(tiny_config, tmp_path, monkeypatch):
    """Layers that cost mostly a fixed 5 ms: 1.8x is only reachable by removing one of the two."""
    from prunetune import metrics as M
    from prunetune.names import MODEL_DIR
    from prunetune.trainables.families._modeling import SkippedLayer
    from prunetune.trainables.families.compaction import load_compacted
    from prunetune.trainables.methods import _speed
    from prunetune.trainables.trial import run_trial

    table = synthetic_table(heads=(1, 2, 3, 4), widths=(2, 32, 64), per_head=0.1, per_neuron=0.001, fixed=5.0)
    monkeypatch.setattr(_speed, "cached_table", lambda *args, **kwargs: table)
    metrics = run_trial(tiny_config(method="movement", target_speedup=1.8, layer_distill=1.0), output_dir=tmp_path)
    assert M.missing_final_keys(metrics) == []
    assert metrics[M.PREDICTED_SPEEDUP] >= 1.8
    assert sorted(metrics[M.LAYER_HEADS])[0] == 0 and sorted(metrics[M.LAYER_FFN])[0] == 0
    model = load_compacted(tmp_path / MODEL_DIR)
    assert sum(isinstance(layer, SkippedLayer) for layer in model.bert.encoder.layer) == 1  # nothing left of it
    assert metrics[M.SPARSITY] > 0.45  # a whole layer of two is half the prunable weights


def test_the_driver_measures_the_tables_a_search_will_read_before_any_trial(tiny_model_dir, tiny_dataset_csv,
                                                                           tmp_path, monkeypatch):
    """Every runtime the space offers gets its table on the idle node; a trial then only reads it."""
    from prunetune.config import speed_table_settings, validate
    from prunetune.search._driver import _latency_tables
    from prunetune.trainables.training.teacher import prepare_teacher
    from prunetune.trainables.trial import run_trial
    from tests.conftest import tiny_config_dict

    raw = tiny_config_dict(tiny_model_dir, tiny_dataset_csv, tmp_path / "cache", sparsity=None, target_speedup=1.1,
                           latency={"batch_size": 1, "seq_len": 16, "min_run_time": 0.05, "threads": 1})
    raw["space"] = {"trial.runtime": {"choice": ["torch", "onnxruntime"]}, "trial.target_speedup": {"uniform": [1.1, 2]}}
    config = validate(raw, check_model=True)
    assert speed_table_settings(config) == [("torch", "fp32"), ("onnxruntime", "fp32")]
    assert speed_table_settings(validate({**raw, "space": {}}, check_model=True)) == [("torch", "fp32")]
    real = T.measure_table
    monkeypatch.setattr(T, "measure_table", lambda *a, **k: real(*a, point_run_time=0.05, **k))
    teacher = prepare_teacher(config)
    tables = _latency_tables(config, teacher.model_dir, teacher.root)
    assert [(t["runtime"], t["precision"]) for t in tables] == speed_table_settings(config)
    # A layer of this tiny model costs microseconds in ONNX Runtime, below what a table point can
    # resolve; in PyTorch eager a layer's cost shows.
    torch_table = tables[0]
    assert torch_table["max_speedup"] > 1 and torch_table["removed_layer_ms"] < torch_table["dense_layer_ms"]
    assert len(list((teacher.root / T.TABLE_DIR).glob("*.json"))) == 2

    def measure_in_trial(*args, **kwargs):
        raise AssertionError("a trial measured a table the driver had measured")

    monkeypatch.setattr(T, "measure_table", measure_in_trial)
    trial = config.with_trial_values({"trial.runtime": "torch", "trial.target_speedup": 1.1})
    metrics = run_trial(trial, output_dir=tmp_path / "trial")
    assert metrics["predicted_speedup"] >= 1.1


def test_the_grid_is_timed_in_groups_of_one_point_per_row_and_column():
    for rows, columns in ((7, 7), (2, 7), (7, 3), (1, 1)):
        groups = T.latin_groups(rows, columns)
        points = [point for group in groups for point in group]
        assert sorted(points) == [(i, j) for i in range(rows) for j in range(columns)]
        for group in groups:
            assert len({i for i, _ in group}) == len(group) == len({j for _, j in group})


def test_a_burst_while_one_group_is_timed_moves_no_head_count_far(monkeypatch):
    """Every model of one timing call runs 25% slow: on a 7 x 7 grid the table's speed-ups stay
    within a few percent for every shape, where a grid timed row by row had one head count 25% off."""
    model = tiny_classifier(hidden=28, heads=7, ffn=64, layers=2)
    costs = LinearCosts(monkeypatch, slowdown=lambda call, name: 1.25 if call == 2 else 1.0)
    key = T.table_key(model, runtime="torch", precision="fp32", device=CPU, batch_size=1, seq_len=8, threads=1)
    table = T.measure_table(model, key, device=CPU, min_width=8)
    dense = [(7, 64)] * key.num_layers
    for heads in table.heads:
        for width in table.widths:
            shapes = [(heads, width)] * key.num_layers
            assert predicted_speedup(table, shapes) == pytest.approx(costs.speedup(dense, shapes), rel=0.06), shapes


def test_the_width_grid_holds_only_widths_a_pruner_reaches():
    assert T.grid(1536, 7, minimum=32, step=32) == (32, 288, 544, 768, 1024, 1280, 1536)
    assert T.grid(12, 7) == (1, 3, 5, 6, 8, 10, 12)
    assert T.grid(2, 7) == (1, 2) and T.grid(8, 7, minimum=8, step=8) == (8,)
