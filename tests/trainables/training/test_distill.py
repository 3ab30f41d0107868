import math

import pytest
import torch
import torch.nn.functional as F

from prunetune.trainables.training.distill import distillation_loss, kd_divergence


def test_kd_is_zero_when_student_matches_teacher():
    logits = torch.randn(4, 5)
    assert kd_divergence(logits, logits.clone(), 2.0).item() == pytest.approx(0.0, abs=1e-6)


def test_kd_matches_hand_computation():
    student = torch.tensor([[1.0, 0.0]])
    teacher = torch.tensor([[0.0, 1.0]])
    t = 2.0
    p = F.softmax(teacher / t, dim=-1)
    q = F.softmax(student / t, dim=-1)
    expected = (p * (p.log() - q.log())).sum().item() * t * t
    assert kd_divergence(student, teacher, t).item() == pytest.approx(expected, rel=1e-5)


def test_kd_is_the_teachers_distribution_against_the_students():
    """KL(p_teacher || p_student) is not symmetric: swapping the two must change the value."""
    student = torch.tensor([[2.0, 0.0, 0.0]])
    teacher = torch.tensor([[0.0, 1.0, -1.0]])
    p = F.softmax(teacher, dim=-1)
    q = F.softmax(student, dim=-1)
    forward = (p * (p.log() - q.log())).sum().item()
    backward = (q * (q.log() - p.log())).sum().item()
    assert abs(forward - backward) > 0.1  # the case tells the two directions apart
    assert kd_divergence(student, teacher, 1.0).item() == pytest.approx(forward, rel=1e-5)


def test_alpha_mixes_distillation_and_task_loss():
    student, teacher = torch.randn(3, 4), torch.randn(3, 4)
    labels = torch.tensor([0, 1, 2])
    task = F.cross_entropy(student, labels).item()
    kd = kd_divergence(student, teacher, 3.0).item()
    assert distillation_loss(student, teacher, labels, temperature=3.0, alpha=0.0).item() == pytest.approx(task)
    assert distillation_loss(student, teacher, labels, temperature=3.0, alpha=1.0).item() == pytest.approx(kd)
    mixed = distillation_loss(student, teacher, labels, temperature=3.0, alpha=0.9).item()
    assert mixed == pytest.approx(0.9 * kd + 0.1 * task, rel=1e-5)
    assert math.isfinite(mixed)


# --------------------------------------------------------------------------- layer distillation


def test_layer_mapping_is_uniform_and_ends_on_the_last_layer():
    from prunetune.trainables.training.distill import layer_mapping

    assert layer_mapping(6, 6) == [(i, i) for i in range(6)]
    assert layer_mapping(3, 6) == [(0, 1), (1, 3), (2, 5)]
    assert layer_mapping(4, 12) == [(0, 2), (1, 5), (2, 8), (3, 11)]
    assert layer_mapping(1, 12) == [(0, 11)]
    # Layers removed whole learn from no teacher layer; the ones left spread over the teacher's depth.
    assert layer_mapping(6, 6, frozenset({2, 4})) == [(0, 1), (1, 2), (3, 4), (5, 5)]
    assert layer_mapping(2, 6, frozenset({0})) == [(1, 5)]


def test_hidden_state_loss_compares_mapped_layers_on_real_tokens_only():
    import torch

    from prunetune.trainables.training.distill import hidden_state_loss

    generator = torch.Generator().manual_seed(0)
    teacher = tuple(torch.randn(2, 5, 8, generator=generator) for _ in range(3))  # embeddings + 2 layers
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]])
    mapping = [(0, 0), (1, 1)]
    assert hidden_state_loss(teacher, teacher, mask, mapping) == 0
    padded_only = tuple(t.clone() for t in teacher)
    for t in padded_only:
        t[0, 3:] += 100.0  # differences on padding do not count
    assert hidden_state_loss(padded_only, teacher, mask, mapping) == 0
    shifted = tuple(t + 1.0 for t in teacher)
    loss = hidden_state_loss(shifted, teacher, mask, mapping)
    assert loss > 0
    # Relative to the teacher's mean square: scaling both sides leaves it unchanged.
    assert hidden_state_loss(tuple(10 * t for t in shifted), tuple(10 * t for t in teacher), mask,
                             mapping) == pytest.approx(float(loss), rel=1e-5)


def test_layer_distillation_changes_training_and_the_trial_completes(tiny_config, tmp_path):
    from prunetune import metrics as M
    from prunetune.trainables.trial import run_trial

    plain = run_trial(tiny_config(max_steps=6, eval_every=6), output_dir=tmp_path / "plain")
    layered = run_trial(tiny_config(max_steps=6, eval_every=6, layer_distill=5.0), output_dir=tmp_path / "layers")
    assert M.missing_final_keys(layered) == []
    assert layered[M.TRAIN_LOSS] > plain[M.TRAIN_LOSS]  # the hidden-state term adds to the loss
