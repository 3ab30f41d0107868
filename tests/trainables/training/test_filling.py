"""Hybrid filled: exactly the zeros of live heads are re-initialised; the structure is kept."""

import copy

import pytest
import torch

from prunetune import metrics as M
from prunetune.metrics import FILL_SECONDS, FILLED_WEIGHTS
from prunetune.trainables.families.compaction import compact, load_compacted
from prunetune.trainables.measure.size import prunable_linears
from prunetune.trainables.training.filling import fill_live_zeros
from prunetune.trainables.trial import run_trial
from tests.models import bake, block_pruner, tiny_classifier


def pruned_with_a_dead_head():
    """A tiny model pruned to 50% with 8x8 blocks (one block row per head) and head 0 of layer 0 dead."""
    model = tiny_classifier()
    dense = copy.deepcopy(model)
    pruner = block_pruner(model, "movement", block_size=8)
    with torch.no_grad():
        for score in pruner.scorer.scores.values():
            score.copy_(torch.randn_like(score))
        pruner.scorer.scores["l0_query"][0].fill_(-10.0)
    pruner.update_masks(0.5)
    bake(model)
    return model, dense


def test_fill_replaces_exactly_the_zeros_of_live_heads_with_the_teachers_values():
    model, dense = pruned_with_a_dead_head()
    before = copy.deepcopy(model)
    _, structure_before = compact(before)
    filled = fill_live_zeros(model, source=dense, init_std=0.02)
    assert filled > 0
    layer, layer_before, layer_dense = (m.bert.encoder.layer[0] for m in (model, before, dense))
    query, query_before, query_dense = (l.attention.self.query.weight for l in (layer, layer_before, layer_dense))
    live_rows = slice(8, 32)  # heads 1-3 (head size 8) are alive
    holes = query_before[live_rows] == 0
    assert holes.any()
    assert torch.equal(query[live_rows][holes], query_dense[live_rows][holes])  # zeros take the teacher's values
    assert torch.equal(query[live_rows][~holes], query_before[live_rows][~holes])  # survivors untouched
    assert (query[:8] == 0).all() and (layer.attention.self.value.weight[:8] == 0).all()  # the dead head stays dead
    assert (layer.attention.output.dense.weight[:, :8] == 0).all()
    _, structure_after = compact(model)
    assert structure_after.layer_heads == structure_before.layer_heads
    assert structure_after.layer_intermediate_sizes == structure_before.layer_intermediate_sizes


def test_fill_counts_every_zero_inside_live_structure():
    model, dense = pruned_with_a_dead_head()
    compacted, _ = compact(copy.deepcopy(model))
    zeros_inside = sum(int((linear.weight == 0).sum()) for linear in prunable_linears(compacted))
    assert fill_live_zeros(model, source=dense, init_std=0.02) == zeros_inside
    compacted, _ = compact(model)
    assert all(int((linear.weight == 0).sum()) == 0 for linear in prunable_linears(compacted))


def test_random_fill_draws_from_the_initialiser():
    model, _ = pruned_with_a_dead_head()
    live_rows = slice(8, 32)  # layer 0, heads 1-3
    before = model.bert.encoder.layer[0].attention.self.key.weight[live_rows].clone()
    fill_live_zeros(model, source=None, init_std=0.02, generator=torch.Generator().manual_seed(0))
    after = model.bert.encoder.layer[0].attention.self.key.weight[live_rows]
    new_values = after[before == 0]
    assert new_values.numel() > 50 and (new_values != 0).all()
    assert new_values.std().item() == pytest.approx(0.02, rel=0.3)


def test_fill_refuses_a_source_of_another_shape():
    model, _ = pruned_with_a_dead_head()
    with pytest.raises(ValueError, match="same shape"):
        fill_live_zeros(model, source=tiny_classifier(hidden=64), init_std=0.02)


def test_filled_trial_keeps_the_structure_and_reports_every_key(tiny_config, tmp_path):
    plain = run_trial(tiny_config(), output_dir=tmp_path / "plain")
    filled = run_trial(tiny_config(filled=True, fill_steps=4), output_dir=tmp_path / "filled")
    assert M.missing_final_keys(filled) == []
    assert filled["layer_heads"] == plain["layer_heads"] and filled["layer_ffn"] == plain["layer_ffn"]
    assert filled[M.PARAMS] == plain[M.PARAMS]
    assert filled[FILLED_WEIGHTS] > 0 and filled[FILL_SECONDS] > 0
    assert filled[M.SPARSITY] < plain[M.SPARSITY]  # only removed structure is left: the zeros are filled
    assert filled[M.TRAIN_SECONDS] > filled[FILL_SECONDS]
    model = load_compacted(tmp_path / "filled" / "model")
    query = model.bert.encoder.layer[0].attention.self.query.weight
    assert int((query == 0).sum()) == 0
