import pytest
import torch
from transformers import AutoModelForSequenceClassification

from prunetune.trainables.compaction import (
    compact,
    compact_and_verify,
    load_compacted,
    max_logit_difference,
    save_compacted,
)
from prunetune.trainables.pruning import BlockPruner
from tests.trainables.test_pruning import tiny_classifier


def pruned_model(method="movement", block_size=8, sparsity=0.5, seed=0):
    model = tiny_classifier(seed=seed)
    pruner = BlockPruner(model, method=method, block_size=block_size)
    torch.manual_seed(seed)
    for score in pruner.scores.values():
        torch.nn.init.normal_(score)
    pruner.update_masks(sparsity)
    return model, pruner


@pytest.mark.parametrize("block_size", [1, 4, 8, 16, 32])
@pytest.mark.parametrize("method", ["movement", "magnitude"])
def test_compacted_logits_equal_masked_logits(method, block_size):
    masked, pruner = pruned_model(method, block_size, sparsity=0.6)
    reference = tiny_classifier()
    reference.load_state_dict(masked.state_dict())
    pruner.bake(masked)
    compacted, report = compact(masked)
    assert max_logit_difference(masked, compacted, vocab_size=50) < 1e-5
    assert report.ffn_after < report.ffn_before


def test_compaction_removes_dead_heads_and_neurons():
    model = tiny_classifier()
    layer = model.bert.encoder.layer[0]
    with torch.no_grad():
        layer.attention.self.key.weight[8:16] = 0  # head 1: key slice dead
        layer.attention.self.key.bias[8:16] = 0
        layer.attention.self.value.weight[8:16] = 0  # its values are masked too, as the pruner does
        layer.attention.self.value.bias[8:16] = 0
        layer.intermediate.dense.weight[:10] = 0
        layer.intermediate.dense.bias[:10] = 0
    compacted, report = compact_and_verify(model)
    assert report.heads_pruned == 1
    assert report.layer_heads == (3, 4)
    assert report.layer_intermediate_sizes == (54, 64)
    assert compacted.bert.encoder.layer[0].attention.self.query.out_features == 24


def test_compaction_of_a_layer_with_no_live_head_keeps_one_unit():
    model, pruner = pruned_model(block_size=32, sparsity=0.6)  # a 32x32 matrix is a single block
    pruner.bake(model)
    compacted, report = compact_and_verify(model)
    assert report.heads_pruned == report.heads_before
    assert all(h == 1 for h in report.layer_heads)


def test_compacted_model_saves_and_loads_with_per_layer_widths(tmp_path):
    model, pruner = pruned_model(block_size=8, sparsity=0.6)
    pruner.bake(model)
    compacted, report = compact_and_verify(model)
    save_compacted(compacted, tmp_path / "model")
    loaded = load_compacted(tmp_path / "model")
    assert tuple(loaded.config.layer_heads) == report.layer_heads
    assert max_logit_difference(compacted, loaded, vocab_size=50) == 0.0
    through_auto = AutoModelForSequenceClassification.from_pretrained(tmp_path / "model")
    assert type(through_auto).__name__ == "PrunedBertForSequenceClassification"
    assert sum(p.numel() for p in loaded.parameters()) < sum(p.numel() for p in tiny_classifier().parameters())
