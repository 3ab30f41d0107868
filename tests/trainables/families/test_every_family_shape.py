"""Compaction over every family's layer shape, spec-driven: heads, FFN neurons (a gated FFN's gate
with them), fused matrices sliced per role and fused again, emptied and skipped layers, a shared
per-head bias sliced per layer, save and load."""

from __future__ import annotations

import pytest
import torch

from prunetune.trainables.families import FAMILIES, family_of, read_model_dims
from prunetune.trainables.families._modeling import FusedLinear, LayerView, get_path, layer_views
from prunetune.trainables.families.compaction import compact_and_verify, load_compacted, save_compacted
from tests.models import family_config, tiny_classifier

HEAD_SIZE = 8  # tiny models: hidden 32, 4 heads


def kill_head(view: LayerView, head: int) -> None:
    """Zero the value rows of unit ``head`` (a head; with grouped-query attention, a key/value head)."""
    rows = slice(head * HEAD_SIZE, (head + 1) * HEAD_SIZE)
    with torch.no_grad():
        view.linear("value").weight[rows] = 0
        if view.linear("value").bias is not None:
            view.linear("value").bias[rows] = 0


def kill_neurons(view: LayerView, count: int) -> None:
    with torch.no_grad():
        view.linear("ffn_in").weight[:count] = 0
        if view.linear("ffn_in").bias is not None:
            view.linear("ffn_in").bias[:count] = 0


def kill_layer(view: LayerView) -> None:
    for head in range(4):
        kill_head(view, head)
    with torch.no_grad():
        view.linear("ffn_out").weight.zero_()


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_heads_neurons_and_layers_compact_exactly(family, tmp_path):
    model = tiny_classifier(family, layers=3, seed=1)
    spec = family_of(model)
    views = layer_views(model, spec)
    kill_head(views[0], 0)  # the first head: a shared per-head bias must then be sliced, not cut short
    kill_head(views[0], 2 if views[0].group_size == 1 else 0)  # grouped-query: key/value head 0 is 2 heads
    kill_neurons(views[0], 10)
    kill_layer(views[1])
    compacted, report = compact_and_verify(model)
    assert report.layer_heads == (2, 0, 4)
    assert report.layer_intermediate_sizes == (54, 0, 64)
    kept = layer_views(compacted, spec, split=False)[0]
    for path, roles in spec.fused:  # held fused again, at the new widths (viewing does not split it)
        fused = get_path(compacted, f"{spec.layers}.0.{path}")
        assert isinstance(fused, torch.nn.Linear) and fused.out_features == len(roles) * kept.linear(roles[0]).out_features
    assert kept.num_heads == 2 and kept.ffn_width == 54
    if spec.gated_ffn:
        assert kept.ffn_gate().out_features == 54
    if spec.head_sliced_bias:
        assert compacted.config.layer_head_indices[0] == [1, 3]

    save_compacted(compacted, tmp_path / "model")
    loaded = load_compacted(tmp_path / "model")
    ids = torch.randint(5, 50, (2, 9))
    mask = torch.ones_like(ids)
    mask[1, 6:] = 0
    with torch.no_grad():
        expected = model(input_ids=ids, attention_mask=mask).logits
        assert torch.allclose(loaded(input_ids=ids, attention_mask=mask).logits, expected, atol=1e-5)
    assert sum(p.numel() for p in loaded.parameters()) < sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("family", sorted(name for name, spec in FAMILIES.items() if spec.fused))
def test_a_fused_matrix_is_viewed_per_role_without_changing_the_model(family):
    model = tiny_classifier(family, seed=2)
    ids = torch.randint(5, 50, (2, 9))
    with torch.no_grad():
        before = model(input_ids=ids).logits
    spec = family_of(model)
    view = layer_views(model, spec)[0]
    original = tiny_classifier(family, seed=2)
    for path, roles in spec.fused:
        fused = get_path(get_path(original, spec.layers)[0], path)
        assert isinstance(get_path(view.layer, path), FusedLinear)
        rows = fused.out_features // len(roles)
        for index, role in enumerate(roles):  # each role is its block of the fused rows, in order
            assert torch.equal(view.linear(role).weight, fused.weight[index * rows:(index + 1) * rows])
    with torch.no_grad():
        assert torch.allclose(model(input_ids=ids).logits, before, atol=1e-6)


def test_grouped_query_attention_loses_a_key_value_head_with_the_query_heads_that_share_it():
    model = tiny_classifier("eurobert", layers=2, seed=3)  # 4 query heads in 2 groups
    view = layer_views(model, family_of(model))[0]
    assert (view.group_size, view.num_units, view.num_heads) == (2, 2, 4)
    assert view.unit_rows("query") == view.unit_rows("attention_output") == 16 and view.unit_rows("key") == 8
    with torch.no_grad():
        view.linear("value").weight[:HEAD_SIZE] = 0  # key/value head 0: query heads 0 and 1 lose their values
    compacted, report = compact_and_verify(model)
    assert report.layer_heads == (2, 4) and report.heads_pruned == 2
    kept = layer_views(compacted, family_of(compacted), split=False)[0]
    assert kept.linear("query").out_features == 16 and kept.linear("key").out_features == 8
    assert kept.group_size == 2 and compacted.config.layer_head_indices[0] == [2, 3]
    assert torch.equal(kept.linear("key").weight, view.linear("key").weight[HEAD_SIZE:])
    assert torch.equal(kept.linear("query").weight, view.linear("query").weight[2 * HEAD_SIZE:])
    assert torch.equal(kept.linear("attention_output").weight, view.linear("attention_output").weight[:, 2 * HEAD_SIZE:])


def test_grouped_query_blocks_must_tile_the_key_value_heads(tmp_path):
    from prunetune.trainables.methods._base import block_size_problem

    config = family_config("eurobert", hidden=64, heads=8, num_key_value_heads=1)  # one key/value head of 8 rows
    config.save_pretrained(tmp_path)
    dims = read_model_dims(str(tmp_path))
    assert (dims.num_kv_heads, dims.group_size) == (1, 8) and "in 1 key/value groups" in dims.describe()
    assert block_size_problem("trial.block_size", 8, dims) is None
    problem = block_size_problem("trial.block_size", 16, dims)
    assert "trial.block_size = 16" in problem and "key/value heads' rows" in problem and "valid: [1, 2, 4, 8]" in problem


@pytest.mark.parametrize("family", sorted(name for name, spec in FAMILIES.items() if spec.supplied_heads))
def test_a_supplied_question_answering_head_trains_and_compacts(family):
    import transformers

    from prunetune.trainables.families.compaction import register_auto_classes

    register_auto_classes()
    torch.manual_seed(0)
    model = transformers.AutoModelForQuestionAnswering.from_config(family_config(family)).eval()
    assert type(model).__name__ == f"{FAMILIES[family].class_prefix}ForQuestionAnswering"
    ids = torch.randint(5, 50, (2, 9))
    output = model(input_ids=ids, start_positions=torch.tensor([1, 2]), end_positions=torch.tensor([3, 20]))
    assert output.start_logits.shape == output.end_logits.shape == (2, 9) and torch.isfinite(output.loss)
    view = layer_views(model, family_of(model))[0]
    kill_head(view, 1)  # its value rows: a head, or with grouped-query attention a key/value head and its group
    compacted, report = compact_and_verify(model)
    assert report.layer_heads == (4 - view.group_size, 4) and type(compacted).__name__.endswith("ForQuestionAnswering")


@pytest.mark.parametrize("family", ["eurobert", "modernbert"])
def test_a_latency_table_times_the_family_shapes(family, monkeypatch):
    """Grouped-query attention in whole groups; ModernBERT's per-layer attention kinds for any layer count."""
    from prunetune.trainables.measure import latency_table as T

    monkeypatch.setattr(T, "GROUP_ROUNDS", 1)  # the shapes are what is checked, not the timings' precision

    model = tiny_classifier(family, layers=2)
    key = T.table_key(model, runtime="torch", precision="fp32", device=torch.device("cpu"), batch_size=1,
                      seq_len=8, threads=1)
    table = T.measure_table(model, key, device=torch.device("cpu"), min_width=16, point_run_time=0.01)
    assert table.heads == ((2, 4) if family == "eurobert" else (1, 2, 3, 4))  # EuroBERT's groups of 2 heads
    # The family's smallest shape was timed; the fitted figure a tiny model's noise may clip to zero.
    assert table.dense_ms > 0 and table.measured_layer_ms[0][0] > 0 and table.layer(table.heads[0], 16) >= 0
