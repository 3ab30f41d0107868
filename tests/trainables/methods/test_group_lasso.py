"""Reweighted group lasso: the penalty, the hard prune, the fixed mask, and a whole trial."""

import pytest
import torch

from prunetune import metrics as M
from prunetune.config import TrialConfig
from prunetune.errors import ConfigError
from prunetune.trainables.families import ModelDims, family_of
from prunetune.trainables.families.compaction import compact
from prunetune.trainables.measure.size import weight_sparsity
from prunetune.trainables.methods._group_lasso import (
    REWEIGHT_EPSILON,
    GroupLassoPruner,
    group_lasso_sparsity,
    tile_norms,
)
from prunetune.trainables.methods.group_lasso import GroupLasso
from prunetune.trainables.trial import run_trial
from tests.models import bake, tiny_classifier

SCHEDULE = dict(max_steps=100, warmup_fraction=0.1, cooldown_fraction=0.3)


def pruner_for(model, *, rows=4, cols=4, penalty=1e-2, reweight_every=5):
    return GroupLassoPruner(model, family_of(model), block_rows=rows, block_cols=cols, penalty=penalty, reweight_every=reweight_every, **SCHEDULE)


def flat_norms(pruner):
    return torch.cat([norms.flatten() for layer in pruner.group_norms() for norms in layer.values()])


def test_tile_norms_are_per_tile_l2_norms():
    weight = torch.arange(32.0).reshape(4, 8)
    norms = tile_norms(weight, 2, 4)
    assert norms.shape == (2, 2)
    assert norms[1, 0].item() == pytest.approx(weight[2:4, 0:4].norm().item())


def test_penalty_only_in_its_phase():
    pruner = pruner_for(tiny_classifier())
    assert pruner.penalty(5) is None  # warm-up: steps 0-9
    assert pruner.penalty(10) is not None
    assert pruner.penalty(69) is not None
    assert pruner.penalty(70) is None  # hard prune at step 70, then retraining
    assert group_lasso_sparsity(69, max_steps=100, final=0.6, cooldown_fraction=0.3) == 0.0
    assert group_lasso_sparsity(70, max_steps=100, final=0.6, cooldown_fraction=0.3) == 0.6


def test_reweighting_sets_gamma_from_the_norms_and_holds_it():
    model = tiny_classifier()
    pruner = pruner_for(model, reweight_every=5)
    pruner.penalty(10)
    expected = 1.0 / (pruner.group_norms()[0]["query"] + REWEIGHT_EPSILON)
    assert torch.allclose(pruner.gamma_l0_query, expected)
    with torch.no_grad():
        model.bert.encoder.layer[0].attention.self.query.weight.mul_(0.5)
    pruner.penalty(11)  # between reweightings gamma is held fixed
    assert torch.allclose(pruner.gamma_l0_query, expected)
    pruner.penalty(15)
    assert torch.allclose(pruner.gamma_l0_query, 1.0 / (pruner.group_norms()[0]["query"] + REWEIGHT_EPSILON))


def test_the_penalty_pushes_group_norms_down_and_small_groups_hardest():
    model = tiny_classifier()
    pruner = pruner_for(model, penalty=1e-2)
    before = flat_norms(pruner)
    # Plain gradient descent on the penalty alone: each group's norm falls by lr * p * gamma_g
    # per step, so with gamma = 1 / norm the smallest groups fall fastest.
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    for step in range(10, 20):
        pruner.penalty(step).backward()
        optimizer.step()
        optimizer.zero_grad()
    after = flat_norms(pruner)
    assert (after < before).all()
    fall = before - after
    smallest, largest = before.argmin(), before.argmax()
    assert fall[smallest] > 2 * fall[largest]


@pytest.mark.parametrize("rows, cols", [(4, 4), (8, 2), (1, 8)])
def test_hard_prune_hits_the_target_sparsity(rows, cols):
    model = tiny_classifier(hidden=64, heads=4, ffn=128)
    pruner = pruner_for(model, rows=rows, cols=cols)
    pruner.update_masks(0.0)
    assert not pruner.pruned and model.bert.encoder.layer[0].attention.self.query.weight_mask is None
    pruner.update_masks(0.6)
    assert pruner.pruned and pruner.current_sparsity == 0.6
    bake(model)
    assert weight_sparsity(model) == pytest.approx(0.6, abs=0.01)


def test_pruned_groups_are_the_smallest():
    model = tiny_classifier()
    pruner = pruner_for(model)
    norms = pruner.group_norms()[1]["ffn"]
    pruner.update_masks(0.5)
    mask = pruner.mask_l1_ffn.bool()
    assert norms[mask].min() >= norms[~mask].max()


def test_the_mask_stays_fixed_while_retraining():
    model = tiny_classifier()
    pruner = pruner_for(model)
    pruner.update_masks(0.5)
    masks = {name: buffer.clone() for name, buffer in pruner.named_buffers() if name.startswith("mask")}
    query = model.bert.encoder.layer[0].attention.self.query
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    for _ in range(5):
        pruner.update_masks(0.8)  # a later, higher sparsity does not re-prune: the mask is fixed
        logits = model(input_ids=torch.randint(0, 50, (4, 8))).logits
        torch.nn.functional.cross_entropy(logits, torch.tensor([0, 1, 2, 0])).backward()
        assert (query.weight.grad[query.weight_mask == 0] == 0).all()  # pruned weights get no gradient
        optimizer.step()
        optimizer.zero_grad()
    for name, buffer in pruner.named_buffers():
        if name.startswith("mask"):
            assert torch.equal(buffer, masks[name])
    assert (query.masked_weight()[query.weight_mask == 0] == 0).all()
    bake(model)
    assert weight_sparsity(model) == pytest.approx(0.5, abs=0.02)


def test_group_shape_must_fit_the_heads():
    dims = ModelDims(name="tiny", family="bert", hidden_size=32, num_heads=4, intermediate_size=64, num_layers=2)

    def problems(rows, cols):
        trial = TrialConfig(method="group_lasso", group_lasso={"block_rows": rows, "block_cols": cols})
        return GroupLasso().model_problems(trial, dims)

    assert problems(4, 16) == []
    (problem,) = problems(3, 4)
    assert problem.startswith("trial.group_lasso.block_rows = 3")
    (problem,) = problems(4, 5)
    assert problem.startswith("trial.group_lasso.block_cols = 5")


def test_a_bad_group_shape_fails_before_loading_anything(tiny_config, tmp_path):
    with pytest.raises(ConfigError, match="trial.group_lasso.block_rows = 3"):
        run_trial(tiny_config(method="group_lasso", group_lasso={"block_rows": 3}), output_dir=tmp_path / "never")
    assert not (tmp_path / "never").exists()


def test_group_lasso_trial_reports_every_contract_key(tiny_config, tmp_path):
    options = {"block_rows": 8, "block_cols": 4, "penalty": 1e-3, "reweight_every": 3}
    metrics = run_trial(tiny_config(method="group_lasso", group_lasso=options), output_dir=tmp_path)
    assert M.missing_final_keys(metrics) == []
    assert metrics[M.SPARSITY] == pytest.approx(0.5, abs=0.02)
    assert metrics[M.FFN_KEPT] == pytest.approx(0.5)


def test_sparsity_stays_exact_when_the_smallest_tiles_empty_whole_heads():
    model = tiny_classifier(hidden=64, heads=4, ffn=128)
    with torch.no_grad():  # Q keeps only head 0's tiles, K only other heads': every head is emptied
        for layer in model.bert.encoder.layer:
            layer.attention.self.query.weight[16:].mul_(1e-3)
            layer.attention.self.key.weight[:16].mul_(1e-3)
    pruner = pruner_for(model, rows=16, cols=16)
    pruner.update_masks(0.75)
    bake(model)
    # without bringing heads back, the whole attention would go: sparsity 0.875
    assert weight_sparsity(model) == pytest.approx(0.75, abs=0.01)
    compacted, structure = compact(model)  # the revived heads are real heads: compaction keeps them
    assert all(heads >= 1 for heads in structure.layer_heads)


class StopAfterFirstCheckpoint(Exception):
    pass


def test_group_lasso_trial_resumes_with_its_fixed_mask(tiny_config, tmp_path):
    from safetensors.torch import load_file

    config = tiny_config(method="group_lasso", cooldown_fraction=0.6)  # hard prune at step 5, checkpoint at 6

    def crash(metrics, checkpoint):
        raise StopAfterFirstCheckpoint

    with pytest.raises(StopAfterFirstCheckpoint):
        run_trial(config, output_dir=tmp_path, report=crash)
    saved = load_file(tmp_path / "checkpoint" / "pruner.safetensors")
    assert saved["pruned_to"].item() == 0.5
    metrics = run_trial(config, output_dir=tmp_path)
    assert metrics[M.SPARSITY] == pytest.approx(0.5, abs=0.02)
    assert metrics["layer_ffn"] == [int(saved[f"mask_l{i}_ffn"].sum()) for i in range(2)]
