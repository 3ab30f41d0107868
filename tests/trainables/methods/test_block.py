import pytest
import torch

from prunetune.trainables.measure.size import weight_sparsity
from prunetune.trainables.methods._masks import (
    MaskedLinear,
    cubic_sparsity,
    keep_count,
    top_k_mask,
)
from tests.models import bake, block_pruner, tiny_classifier


def test_schedule_is_dense_then_cubic_then_final():
    kwargs = dict(max_steps=100, final=0.8, warmup_fraction=0.1, cooldown_fraction=0.2)
    assert cubic_sparsity(0, **kwargs) == 0.0
    assert cubic_sparsity(9, **kwargs) == 0.0
    assert cubic_sparsity(10, **kwargs) == 0.0
    ramp = [cubic_sparsity(s, **kwargs) for s in range(10, 80)]
    assert all(a <= b for a, b in zip(ramp, ramp[1:]))
    # cubic: most of the pruning happens early in the ramp
    assert cubic_sparsity(45, **kwargs) == pytest.approx(0.8 * (1 - 0.5**3))
    assert cubic_sparsity(80, **kwargs) == 0.8
    assert cubic_sparsity(99, **kwargs) == 0.8


def test_top_k_mask_keeps_exactly_k():
    scores = torch.tensor([[0.1, 0.9], [0.5, -1.0]])
    assert top_k_mask(scores, 2).tolist() == [[0.0, 1.0], [1.0, 0.0]]
    assert top_k_mask(scores, 0).sum() == 0
    assert keep_count(144, 0.5) == 72


@pytest.mark.parametrize("block_size", [1, 4, 8])
def test_attention_masks_are_whole_blocks(block_size):
    model = tiny_classifier()
    pruner = block_pruner(model, "magnitude", block_size=block_size)
    pruner.update_masks(0.5)
    query = model.bert.encoder.layer[0].attention.self.query
    assert isinstance(query, MaskedLinear)
    mask = query.weight_mask
    assert mask.shape == query.weight.shape
    blocks = mask.reshape(32 // block_size, block_size, 32 // block_size, block_size)
    per_block = blocks.sum(dim=(1, 3))
    assert set(per_block.unique().tolist()) <= {0.0, float(block_size * block_size)}


def test_top_k_keeps_exactly_the_target_count_of_blocks_and_neurons():
    model = tiny_classifier()
    pruner = block_pruner(model, "magnitude", block_size=4)
    pruner.update_masks(0.5)
    for view in pruner.views:
        blocks = sum(int(view.linear(role).weight_mask.sum().item()) // 16
                     for role in ("query", "key", "value", "attention_output"))
        assert blocks == 4 * keep_count(64, 0.5)  # 8 x 8 blocks of 4 x 4 per 32 x 32 matrix
        assert int(view.linear("ffn_in").weight_mask[:, 0].sum()) == keep_count(64, 0.5)


def test_ffn_mask_is_shared_by_rows_and_columns():
    model = tiny_classifier()
    pruner = block_pruner(model, "magnitude", block_size=4)
    pruner.update_masks(0.75)
    layer = model.bert.encoder.layer[1]
    rows = layer.intermediate.dense.weight_mask[:, 0]
    cols = layer.output.dense.weight_mask[0, :]
    assert torch.equal(rows, cols)
    assert int(rows.sum()) == keep_count(64, 0.75)


def test_final_sparsity_is_the_target():
    model = tiny_classifier(hidden=64, heads=4, ffn=128)
    pruner = block_pruner(model, "movement", block_size=4)
    for score in pruner.scorer.scores.values():
        torch.nn.init.normal_(score)
    pruner.update_masks(0.6)
    bake(model)
    assert weight_sparsity(model) == pytest.approx(0.6, abs=0.01)


def test_movement_scores_get_the_summed_movement_signal():
    model = tiny_classifier()
    pruner = block_pruner(model, "movement", block_size=8)
    pruner.update_masks(0.0)
    logits = model(input_ids=torch.randint(0, 50, (2, 6))).logits
    logits.sum().backward()
    query = model.bert.encoder.layer[0].attention.self.query
    expected = (query.weight.grad * query.weight).reshape(4, 8, 4, 8).sum(dim=(1, 3))
    # with every block kept, dL/dW' equals dL/dW, so the score gradient is sum(dL/dW * W) per block
    assert torch.allclose(pruner.scorer.scores["l0_query"].grad, expected, atol=1e-6)


def test_dead_heads_mask_their_values_and_outputs():
    model = tiny_classifier()
    pruner = block_pruner(model, "movement", block_size=8)  # head size 8: one block row per head
    with torch.no_grad():
        pruner.scorer.scores["l0_query"][0].fill_(-10.0)  # head 0's query blocks score lowest
        pruner.scorer.scores["l0_query"][1:].fill_(1.0)
    pruner.update_masks(0.25)
    layer = model.bert.encoder.layer[0]
    assert layer.attention.self.query.weight_mask[:8].sum() == 0
    assert layer.attention.self.value.weight_mask[:8].sum() == 0
    assert layer.attention.output.dense.weight_mask[:, :8].sum() == 0


def test_bake_restores_plain_linears():
    model = tiny_classifier()
    pruner = block_pruner(model, "magnitude", block_size=4)
    pruner.update_masks(0.5)
    bake(model)
    query = model.bert.encoder.layer[0].attention.self.query
    assert type(query) is torch.nn.Linear
    assert weight_sparsity(model) == pytest.approx(0.5, abs=0.02)


def test_min_head_density_removes_sparse_heads_without_changing_sparsity():
    def heads_alive(min_head_density):
        model = tiny_classifier(hidden=64, heads=4, ffn=128)
        pruner = block_pruner(model, "movement", block_size=4, min_head_density=min_head_density)
        torch.manual_seed(1)
        for score in pruner.scorer.scores.values():
            torch.nn.init.normal_(score)
        pruner.update_masks(0.3)
        bake(model)
        query = model.bert.encoder.layer[0].attention.self.query.weight
        alive = int(query.view(4, 16, 64).ne(0).any(dim=2).any(dim=1).sum())
        return alive, weight_sparsity(model)

    alive_loose, sparsity_loose = heads_alive(0.0)
    alive_strict, sparsity_strict = heads_alive(0.6)
    assert alive_loose == 4 and alive_strict < 4
    assert sparsity_strict == pytest.approx(sparsity_loose, abs=0.01)
    # stricter: the two live heads cannot take every freed block back, so the FFN keeps more neurons
    alive_strictest, sparsity_strictest = heads_alive(0.64)
    assert alive_strictest == 2
    assert sparsity_strictest == pytest.approx(sparsity_loose, abs=0.01)
