"""Space validation: every point must make a valid trial; all problems in one ConfigError."""

from __future__ import annotations

import pytest

from prunetune.config import validate
from prunetune.errors import ConfigError


def problems_of(raw: dict, **kwargs) -> list[str]:
    with pytest.raises(ConfigError) as info:
        validate(raw, **kwargs)
    return info.value.problems


def test_a_valid_space_validates():
    config = validate({
        "space": {
            "trial.sparsity": {"uniform": [0.0, 0.95]},
            "trial.block_size": {"choice": [16, 32]},
            "trial.temperature": {"loguniform": [1.0, 16.0]},
            "trial.alpha": {"uniform": [0.0, 1.0]},
            "trial.precision": {"choice": ["fp32", "bf16"]},
            "trial.inference_precision": {"choice": ["fp32", "int8"]},
            "trial.method": {"choice": ["movement", "magnitude"]},
            "trial.latency.batch_size": {"int": [1, 8]},
        }
    })
    assert config.space["trial.sparsity"].kind == "uniform"
    assert validate(config.to_dict()).space == config.space  # the resolved YAML reads back the same


def test_ranges_outside_what_the_trial_accepts_are_rejected():
    problems = problems_of({"space": {
        "trial.sparsity": {"uniform": [0.0, 1.0]},
        "trial.alpha": {"uniform": [-0.5, 1.0]},
        "trial.precision": {"choice": ["fp32", "fp8"]},
        "trial.temperature": {"loguniform": [1e-3, 10]},
    }})
    text = "\n".join(problems)
    assert "space.trial.sparsity" in text and "value 1.0" in text and "less than 1" in text
    assert "space.trial.alpha" in text and "value -0.5" in text
    assert "space.trial.precision" in text and "'fp8'" in text
    assert "trial.temperature" not in text  # 1e-3 > 0 is fine
    assert len(problems) == 3


def test_unknown_keys_and_float_ranges_on_integer_keys():
    problems = problems_of({"space": {
        "trial.sparsityy": {"uniform": [0.0, 0.5]},
        "search.num_trials": {"int": [1, 4]},
        "trial.max_steps": {"uniform": [10, 100]},
    }})
    text = "\n".join(problems)
    assert "space.trial.sparsityy: not a searchable key" in text and "trial.sparsity" in text
    assert "space.search.num_trials: not a searchable key" in text
    assert "space.trial.max_steps" in text and "takes integers" in text


def test_malformed_dimension_is_reported_with_its_key():
    problems = problems_of({"space": {"trial.sparsity": {"uniform": [0.9, 0.1]}}})
    assert any(p.startswith("space.trial.sparsity") and "low < high" in p for p in problems)


def test_cross_key_rules_are_checked_at_the_corners():
    problems = problems_of({"space": {
        "trial.warmup_fraction": {"uniform": [0.1, 0.6]},
        "trial.cooldown_fraction": {"uniform": [0.1, 0.5]},
    }})
    assert any("warmup_fraction=0.6" in p and "cooldown_fraction=0.5" in p for p in problems)


def test_fp16_needs_gpus_per_trial():
    raw = {"space": {"trial.precision": {"choice": ["fp32", "fp16"]}}}
    problems = problems_of(raw)
    assert any("fp16" in p and "cluster.gpus_per_trial = 0" in p for p in problems)
    validate({**raw, "cluster": {"gpus_per_trial": 0.25}})  # a quarter of a GPU is enough


def test_block_sizes_are_checked_against_the_model(tiny_model_dir):
    # The tiny BERT: hidden 32, 4 heads of 8.
    short = {"max_length": 16}  # the tiny model embeds 64 positions
    raw = {"teacher": {"model": str(tiny_model_dir)}, "task": short,
           "trial": {"block_size": 8, "latency": {"seq_len": 16}},
           "space": {"trial.block_size": {"choice": [4, 8, 12]}}}
    problems = problems_of(raw, check_model=True)
    assert len(problems) == 1
    assert problems[0].startswith("trial.block_size = 12: must divide")
    assert problems[0].endswith("(a point of the search space: trial.block_size=12)")
    assert str(tiny_model_dir) in problems[0] and "hidden 32" in problems[0] and "4 heads of 8" in problems[0]
    validate({**raw, "space": {"trial.block_size": {"choice": [4, 8, 16]}}}, check_model=True)


def test_the_trials_own_block_size_is_checked_when_the_space_searches_it(tiny_model_dir):
    raw = {"teacher": {"model": str(tiny_model_dir)}, "task": {"max_length": 16},
           "trial": {"block_size": 12, "latency": {"seq_len": 16}},
           "space": {"trial.block_size": {"choice": [4, 8]}}}
    (problem,) = problems_of(raw, check_model=True)
    assert problem.startswith("trial.block_size = 12: must divide") and "search space" not in problem


def test_lengths_beyond_the_position_embeddings_are_refused(tiny_model_dir):
    raw = {"teacher": {"model": str(tiny_model_dir)}, "task": {"max_length": 100},
           "trial": {"block_size": 8, "latency": {"seq_len": 65}}}
    problems = problems_of(raw, check_model=True)
    assert any(p.startswith("task.max_length = 100: longer than the 64 positions") for p in problems)
    assert any(p.startswith("trial.latency.seq_len = 65: longer than the 64 positions") for p in problems)


def test_every_problem_at_once():
    problems = problems_of({
        "trial": {"sparsity": 2.0},
        "space": {"trial.alpha": {"uniform": [0, 2]}},
        "search": {"sampler": "cmaes", "objectives": ["accuracy"]},
        "cluster": {"gpus_per_trial": 1.5},
    })
    text = "\n".join(problems)
    for expected in ("trial.sparsity", "space.trial.alpha", "search.sampler", "search.objectives",
                     "cluster.gpus_per_trial"):
        assert expected in text, expected


def test_objectives_take_two_or_three_known_keys_with_their_directions():
    assert list(validate({"search": {"objectives": ["accuracy", "params"]}}).search.objectives.items()) == [
        ("accuracy", "max"), ("params", "min")]
    text = "\n".join(problems_of({"search": {"objectives": {"accuracy": "min", "latency_ms": "min"}}}))
    assert "accuracy improves when maximised" in text
    assert "not a metric key" in "\n".join(problems_of({"search": {"objectives": ["accuracy", "speed"]}}))


def test_starting_points_must_lie_in_the_space():
    text = "\n".join(problems_of({
        "space": {"trial.sparsity": {"uniform": [0.1, 0.5]}},
        "search": {"starting_points": [{"trial.sparsity": 0.9}, {"trial.alpha": 0.5}]},
    }))
    assert "search.starting_points.0.trial.sparsity = 0.9: outside" in text
    assert "search.starting_points.1.trial.alpha: not a searched key" in text
