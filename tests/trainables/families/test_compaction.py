import copy

import pytest
import torch
from transformers import AutoModelForSequenceClassification

from prunetune.errors import TrialError
from prunetune.trainables.families.compaction import (
    compact,
    compact_and_verify,
    load_compacted,
    max_logit_difference,
    save_compacted,
)
from tests.models import bake, block_pruner, tiny_classifier


def pruned_model(method="movement", block_size=8, sparsity=0.5, seed=0):
    model = tiny_classifier(seed=seed)
    pruner = block_pruner(model, method, block_size=block_size)
    torch.manual_seed(seed)
    for score in pruner.scorer.parameters():
        torch.nn.init.normal_(score)
    pruner.update_masks(sparsity)
    return model, pruner


@pytest.mark.parametrize("block_size", [1, 4, 8, 16, 32])
@pytest.mark.parametrize("method", ["movement", "magnitude"])
def test_compacted_logits_equal_masked_logits(method, block_size):
    masked, pruner = pruned_model(method, block_size, sparsity=0.6)
    reference = tiny_classifier()
    reference.load_state_dict(masked.state_dict())
    bake(masked)
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
    kept = compacted.bert.encoder.layer[0]
    # Exactly the live heads' rows (0 and 2-3) and neurons (10-63), in order.
    rows = torch.cat([torch.arange(0, 8), torch.arange(16, 32)])
    for name in ("query", "key", "value"):
        assert torch.equal(getattr(kept.attention.self, name).weight, getattr(layer.attention.self, name).weight[rows])
        assert torch.equal(getattr(kept.attention.self, name).bias, getattr(layer.attention.self, name).bias[rows])
    assert torch.equal(kept.attention.output.dense.weight, layer.attention.output.dense.weight[:, rows])
    assert torch.equal(kept.intermediate.dense.weight, layer.intermediate.dense.weight[10:])
    assert torch.equal(kept.output.dense.weight, layer.output.dense.weight[:, 10:])


def test_compaction_check_is_relative_to_the_logits_scale(monkeypatch):
    """Tiny random models have tiny logits: a wrongly sliced head must still fail the check."""
    from prunetune.trainables.families import compaction

    model = tiny_classifier()
    with torch.no_grad():
        model.classifier.weight.mul_(1e-3)  # logits of magnitude ~1e-4, below an absolute 1e-4 tolerance
        layer = model.bert.encoder.layer[0]
        layer.attention.self.value.weight[8:16] = 0
        layer.attention.self.value.bias[8:16] = 0
    right = compaction._sliced_state_dict

    def off_by_one_head(model, views, heads, neurons):
        return right(model, views, [[h + 1 if h < 3 else h for h in kept] for kept in heads], neurons)

    monkeypatch.setattr(compaction, "_sliced_state_dict", off_by_one_head)
    with pytest.raises(TrialError, match="compaction changed the model's logits"):
        compact_and_verify(model)


def test_compaction_of_a_layer_with_no_live_head_keeps_one_unit():
    model, pruner = pruned_model(block_size=32, sparsity=0.6)  # a 32x32 matrix is a single block
    bake(model)
    compacted, report = compact_and_verify(model)
    assert report.heads_pruned == report.heads_before
    assert all(h == 1 for h in report.layer_heads)


def test_compacted_model_saves_and_loads_with_per_layer_widths(tmp_path):
    model, pruner = pruned_model(block_size=8, sparsity=0.6)
    bake(model)
    compacted, report = compact_and_verify(model)
    save_compacted(compacted, tmp_path / "model")
    loaded = load_compacted(tmp_path / "model")
    assert tuple(loaded.config.layer_heads) == report.layer_heads
    assert max_logit_difference(compacted, loaded, vocab_size=50) == 0.0
    through_auto = AutoModelForSequenceClassification.from_pretrained(tmp_path / "model", trust_remote_code=False)
    assert type(through_auto).__name__ == "PrunedBertForSequenceClassification"
    assert sum(p.numel() for p in loaded.parameters()) < sum(p.numel() for p in tiny_classifier().parameters())


def test_a_layer_with_no_live_head_and_no_live_neuron_is_removed():
    """What is left of it is its two layer norms and output biases: exact, and transformers still
    records a hidden state for it."""
    from prunetune.trainables.families._modeling import EmptiedLayer
    from prunetune.trainables.measure.size import count_prunable_weights
    from prunetune.trainables.training.filling import fill_live_zeros

    model = tiny_classifier(layers=3)
    layer = model.bert.encoder.layer[1]
    with torch.no_grad():
        layer.attention.self.value.weight.zero_()
        layer.attention.self.value.bias.zero_()
        layer.output.dense.weight.zero_()  # dead FFN neurons by their output columns this time
        layer.attention.output.dense.bias.normal_()
        layer.output.dense.bias.normal_()
    compacted, report = compact_and_verify(model)
    assert report.layer_heads == (4, 0, 4) and report.layer_intermediate_sizes == (64, 0, 64)
    emptied = compacted.bert.encoder.layer[1]
    assert isinstance(emptied, EmptiedLayer) and isinstance(emptied, type(layer))
    assert {name for name, _ in emptied.named_parameters()} == {
        "attention.output.dense.bias", "attention.output.LayerNorm.weight", "attention.output.LayerNorm.bias",
        "output.dense.bias", "output.LayerNorm.weight", "output.LayerNorm.bias"}
    ids = torch.randint(0, 50, (2, 7))
    with torch.no_grad():
        outputs = compacted(input_ids=ids, output_hidden_states=True)
        assert len(outputs.hidden_states) == 4
        assert torch.allclose(outputs.logits, model(input_ids=ids).logits, atol=1e-6)
    assert count_prunable_weights(compacted) == count_prunable_weights(model) * 2 // 3
    assert fill_live_zeros(compacted, source=None, init_std=0.02) == 0  # nothing to fill in a removed layer


def test_a_fresh_model_with_emptied_layers_is_initialised():
    """Built from a config alone (to load weights into), an emptied layer's biases are the
    family's initial values, not uninitialised memory."""
    from prunetune.trainables.families import family_of
    from prunetune.trainables.families.compaction import (
        compacted_classes,
        compacted_config,
    )

    dense = tiny_classifier(layers=2)
    spec = family_of(dense)
    _, model_class = compacted_classes(spec)
    model = model_class(compacted_config(dense.config, spec, [0, 0], [0, 0])).eval()
    for layer in model.bert.encoder.layer:
        assert torch.equal(layer.output.dense.bias, torch.zeros_like(layer.output.dense.bias))
    with torch.no_grad():
        assert torch.isfinite(model(input_ids=torch.randint(0, 50, (1, 8))).logits).all()


def test_a_layer_removed_in_training_leaves_nothing():
    """The pruner makes a removed layer pass its input through (layer norms included) while it
    trains; compaction then drops it whole, exactly, and the saved model says so."""
    from prunetune.trainables.families import family_of
    from prunetune.trainables.families._modeling import SkippedLayer, layer_views

    model = tiny_classifier(layers=3, seed=1)
    views = layer_views(model, family_of(model))
    ids = torch.randint(0, 50, (2, 7))
    with torch.no_grad():
        before = model(input_ids=ids, output_hidden_states=True)
        views[1].set_skipped(True)
        skipped = model(input_ids=ids, output_hidden_states=True)
    assert not torch.allclose(before.logits, skipped.logits)
    assert torch.equal(skipped.hidden_states[2], skipped.hidden_states[1])  # recorders see the output passed on
    with torch.no_grad():  # the trial compacts copies of its student for intermediate reports
        assert torch.equal(copy.deepcopy(model)(input_ids=ids).logits, skipped.logits)
    model(input_ids=ids).logits.sum().backward()
    assert views[1].linear("query").weight.grad is None and views[0].linear("query").weight.grad is not None
    model.zero_grad()

    compacted, report = compact_and_verify(model)
    assert report.skipped_layers == (1,) and report.layer_heads == (4, 0, 4)
    removed = compacted.bert.encoder.layer[1]
    assert isinstance(removed, SkippedLayer) and not list(removed.parameters())
    assert compacted.config.skipped_layers == [1]
    with torch.no_grad():
        assert torch.allclose(compacted(input_ids=ids).logits, skipped.logits, atol=1e-6)

    views[1].set_skipped(False)  # a layer the pruner brings back computes again
    with torch.no_grad():
        assert torch.allclose(model(input_ids=ids).logits, before.logits)


def test_a_compacted_model_with_a_skipped_layer_saves_and_loads(tmp_path):
    from prunetune.trainables.families import family_of
    from prunetune.trainables.families._modeling import layer_views

    model = tiny_classifier(layers=3, seed=2)
    layer_views(model, family_of(model))[0].set_skipped(True)
    compacted, _ = compact_and_verify(model)
    save_compacted(compacted, tmp_path / "model")
    loaded = load_compacted(tmp_path / "model")
    ids = torch.randint(0, 50, (2, 9))
    with torch.no_grad():
        assert torch.allclose(loaded(input_ids=ids).logits, compacted(input_ids=ids).logits, atol=1e-6)
    assert not any(key.startswith("bert.encoder.layer.0.") for key in loaded.state_dict())
