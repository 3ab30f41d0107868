"""Test-time pruning: pseudo-labels only, proxies, rounds, and whole trials that never read training labels."""

import dataclasses
import json
from collections.abc import Sequence

import pytest
import torch

from prunetune import metrics as M
from prunetune.config import TrialConfig
from prunetune.trainables import trial as trial_module
from prunetune.trainables.families import ModelDims
from prunetune.trainables.measure.size import count_prunable_weights, prunable_linears
from prunetune.trainables.methods._test_time import (
    FFN,
    HEAD,
    Candidate,
    LatencyCosts,
    _Gates,
    cached_costs,
    candidates,
    choose,
    draw_samples,
    masked_kept_accuracy,
    measure_costs,
    remove_units,
    round_targets,
    soft_agreement,
    taylor_kept_accuracy,
)
from prunetune.trainables.methods.test_time import PRUNE_SECONDS, TestTime
from prunetune.trainables.training.data import Split, load_task_data
from prunetune.trainables.training.teacher import prepare_teacher
from prunetune.trainables.training.training_set import pseudo_labelled_set
from tests.models import tiny_classifier

CPU = torch.device("cpu")
OPTIONS = dict(pseudo_label_samples=40, ranking_samples=8, ffn_group_size=16, prune_rounds=2)
TEST_TIME = dict(method="test_time", test_time=OPTIONS)


class UnreadableLabels(Sequence):
    """Training labels that fail the test when anything reads them."""

    def __init__(self, count: int):
        self.count = count

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, index):
        raise AssertionError("the training labels were read")

    def __iter__(self):
        raise AssertionError("the training labels were read")


def without_train_labels(data):
    train = Split.__new__(Split)
    object.__setattr__(train, "texts", data.train.texts)
    object.__setattr__(train, "labels", UnreadableLabels(len(data.train.texts)))
    return dataclasses.replace(data, train=train)  # same fingerprint: the cached teacher is found


def opinionated_classifier():
    """A tiny classifier whose outputs depend visibly on each unit (a fresh one barely does)."""
    model = tiny_classifier().eval()
    with torch.no_grad():
        for linear in [*prunable_linears(model), model.classifier]:
            linear.weight.mul_(20)
    return model


def fake_tokenizer_inputs(count):
    return {"input_ids": torch.randint(5, 50, (count, 8)), "attention_mask": torch.ones(count, 8, dtype=torch.long)}


class RandomTokenizer:
    def __call__(self, texts, **kwargs):
        return fake_tokenizer_inputs(len(texts))


def ranking_set(count=8, classes=3, seed=0):
    torch.manual_seed(seed)
    return pseudo_labelled_set(RandomTokenizer(), ["x"] * count, torch.randn(count, classes), max_length=8)


def test_pseudo_labels_are_the_teachers_argmax_and_the_slice_is_held_out():
    texts = [f"text {i}" for i in range(30)]
    logits = torch.randn(30, 4)
    tuning, ranking = draw_samples(texts, logits, tokenizer=RandomTokenizer(), max_length=8, samples=20, ranking=5,
                                   seed=0)
    assert len(tuning) == 15 and len(ranking) == 5
    assert torch.equal(tuning.labels, tuning.teacher_logits.argmax(dim=-1))
    order = torch.randperm(30, generator=torch.Generator().manual_seed(0))[:20].tolist()
    assert torch.equal(ranking.teacher_logits, logits[order[:5]])
    assert torch.equal(tuning.teacher_logits, logits[order[5:]])


def test_rounds_spread_over_the_ramp_and_end_at_the_target():
    targets = round_targets(max_steps=100, final=0.5, warmup_fraction=0.1, cooldown_fraction=0.2, rounds=3)
    steps = sorted(targets)
    assert steps == [10, 33, 56]
    values = [targets[s] for s in steps]
    assert values == sorted(values) and values[-1] == 0.5 and values[0] > 0
    assert round_targets(max_steps=10, final=0.4, warmup_fraction=0.0, cooldown_fraction=0.0, rounds=1) == {0: 0.4}


def test_gates_at_zero_remove_exactly_the_unit():
    model = opinionated_classifier()
    inputs = fake_tokenizer_inputs(3)
    originals = [layer.attention.output.dense for layer in model.bert.encoder.layer]
    ffn_originals = [layer.output.dense for layer in model.bert.encoder.layer]
    with torch.no_grad(), _Gates(model, 16, requires_grad=False) as gates:
        gates.heads[0][1] = 0.0
        gates.groups[1][2] = 0.0
        gated = model(**inputs).logits
    assert [layer.attention.output.dense for layer in model.bert.encoder.layer] == originals  # plain again
    assert [layer.output.dense for layer in model.bert.encoder.layer] == ffn_originals
    removed = remove_units(model, heads={0: [1]}, groups={1: [2]}, group_size=16)
    with torch.no_grad():
        assert torch.allclose(gated, removed(**inputs).logits, atol=1e-4)
        assert not torch.allclose(gated, model(**inputs).logits, atol=1e-2)  # the units mattered


def test_masked_proxy_is_the_fall_of_soft_agreement():
    model = opinionated_classifier()
    ranking = ranking_set()
    heads, groups = masked_kept_accuracy(model, ranking, group_size=16, device=CPU)
    assert [len(h) for h in heads] == [4, 4] and [len(g) for g in groups] == [4, 4]
    with torch.no_grad():
        base = soft_agreement(model(**ranking.inputs).logits, ranking.labels).mean()
        without = soft_agreement(remove_units(model, heads={1: [3]}, groups={}, group_size=16)(**ranking.inputs).logits,
                                 ranking.labels).mean()
    assert (base - without).abs() > 1e-5  # the unit matters, so the comparison means something
    assert heads[1][3].item() == pytest.approx((base - without).item(), rel=1e-3, abs=1e-7)


def test_taylor_proxy_scores_every_unit_in_one_pass():
    model = opinionated_classifier()
    model.train()
    heads, groups = taylor_kept_accuracy(model, ranking_set(), group_size=32, device=CPU)
    assert [len(h) for h in heads] == [4, 4] and [len(g) for g in groups] == [2, 2]
    assert all((h >= 0).all() for h in heads) and any((h > 0).any() for h in heads)
    assert model.training  # the mode is restored
    assert all(p.grad is None for p in model.parameters())  # only the gates were differentiated


def test_candidates_rank_by_kept_accuracy_per_millisecond_saved():
    kept = ([torch.tensor([0.02, 0.01])], [torch.tensor([0.01])])
    model = tiny_classifier(layers=1, heads=2, hidden=16, ffn=32)
    ranked = candidates(model, kept, LatencyCosts(dense_ms=1.0, head_ms=0.1, ffn_group_ms=0.01), group_size=32)
    # per ms: head 0 keeps 0.2, head 1 0.1, the FFN group 1.0 (cheap to keep: it saves little)
    assert [(c.kind, c.index) for c in ranked] == [(HEAD, 1), (HEAD, 0), (FFN, 0)]


def test_choose_takes_the_cheapest_units_towards_the_budget_and_keeps_one_per_layer():
    ranked = [Candidate(0, HEAD, h, 0.0, 1.0, 10) for h in range(3)] + [Candidate(1, FFN, 0, 0.1, 1.0, 25)]
    chosen = choose(ranked, budget=24, units=([3, 3], [2, 2]))
    assert [(c.layer, c.kind, c.index) for c in chosen] == [(0, HEAD, 0), (0, HEAD, 1)]  # never the last head
    chosen = choose(ranked, budget=40, units=([3, 3], [2, 2]))
    assert sum(c.weights for c in chosen) == 45  # 20 + 25 is nearer to 40 than 20
    assert choose(ranked, budget=4, units=([3, 3], [2, 2])) == []  # 10 would overshoot more than it lacks


def test_latency_costs_are_per_head_and_per_group():
    model = tiny_classifier()
    costs = measure_costs(model, group_size=16, measure=lambda m: count_prunable_weights(m) * 1e-3)
    # removing one head removes 4 * 32 * 8 weights, one FFN group 2 * 32 * 16
    assert costs.head_ms == pytest.approx(4 * 32 * 8 * 1e-3)
    assert costs.ffn_group_ms == pytest.approx(2 * 32 * 16 * 1e-3)


def test_costs_are_measured_once_and_cached(tmp_path):
    calls = []

    def compute():
        calls.append(1)
        return LatencyCosts(dense_ms=2.0, head_ms=0.1, ffn_group_ms=0.05)

    first = cached_costs(tmp_path / "costs.json", "cpu|x", compute)
    second = cached_costs(tmp_path / "costs.json", "cpu|x", compute)
    assert first == second and len(calls) == 1
    assert json.loads((tmp_path / "costs.json").read_text())["cpu|x"]["head_ms"] == 0.1


def test_ffn_group_must_divide_the_ffn():
    dims = ModelDims(name="tiny", family="bert", hidden_size=32, num_heads=4, intermediate_size=64, num_layers=2)

    def problems(size):
        return TestTime().model_problems(TrialConfig(method="test_time", test_time={"ffn_group_size": size}), dims)

    assert problems(16) == []
    (problem,) = problems(24)
    assert problem.startswith("trial.test_time.ffn_group_size = 24")


def test_student_distils_from_the_teachers_logits_not_the_training_labels(tiny_config, tmp_path):
    config = tiny_config(**TEST_TIME)
    data = load_task_data(config.task)
    teacher = prepare_teacher(config, data=data)
    trial = trial_module._Trial(config, teacher, without_train_labels(data), CPU, tmp_path)
    labels = trial.train_set.labels
    logits = teacher.train_logits()
    assert len(labels) == 32 and len(trial.pruner.ranking) == 8
    matches = [any(torch.equal(row, t) for t in logits) for row in trial.train_set.teacher_logits]
    assert all(matches)  # every distillation target is a cached teacher logit row
    assert torch.equal(labels, trial.train_set.teacher_logits.argmax(dim=-1))


def test_test_time_trial_never_reads_training_labels(tiny_config, tmp_path, monkeypatch):
    config = tiny_config(**TEST_TIME)
    data = load_task_data(config.task)
    prepare_teacher(config, data=data)  # the teacher was fine-tuned, with labels, before
    monkeypatch.setattr(trial_module.worker_cache, "task_data", lambda task: without_train_labels(data))
    metrics = trial_module.run_trial(config, output_dir=tmp_path)
    assert M.missing_final_keys(metrics) == []
    one_unit = 4 * 32 * 8 / (2 * (4 * 32 * 32 + 2 * 32 * 64))  # a head's share of the prunable weights
    assert metrics[M.SPARSITY] == pytest.approx(0.5, abs=one_unit)
    assert metrics[M.HEADS_PRUNED] == 8 - sum(metrics["layer_heads"])
    assert metrics[M.FFN_KEPT] == pytest.approx(sum(metrics["layer_ffn"]) / 128)
    assert 0 < metrics[PRUNE_SECONDS] < metrics[M.TRAIN_SECONDS]


class StopAfterFirstCheckpoint(Exception):
    pass


def test_test_time_trial_resumes_with_its_smaller_student(tiny_config, tmp_path):
    config = tiny_config(method="test_time", test_time={**OPTIONS, "ranking_proxy": "masked"})  # rounds at steps 1 and 5, checkpoint at 6

    def crash(metrics, checkpoint):
        raise StopAfterFirstCheckpoint

    with pytest.raises(StopAfterFirstCheckpoint):
        trial_module.run_trial(config, output_dir=tmp_path, report=crash)
    saved = json.loads((tmp_path / "checkpoint" / "student_config.json").read_text())
    assert sum(saved["layer_heads"]) < 8 or sum(saved["layer_intermediate_sizes"]) < 128
    metrics = trial_module.run_trial(config, output_dir=tmp_path)
    assert metrics["layer_heads"] == saved["layer_heads"]
    assert metrics["layer_ffn"] == saved["layer_intermediate_sizes"]
    assert metrics[M.SPARSITY] > 0.3
