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
