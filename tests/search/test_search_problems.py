"""Problems only a search has are found before Ray starts."""

from __future__ import annotations

from prunetune.config import validate
from prunetune.search import search_problems


def test_a_search_needs_a_searched_dimension():
    config = validate({"space": {"trial.method": {"fixed": "magnitude"}}})
    assert any("no searched dimension" in p for p in search_problems(config))


def test_fp16_training_and_cuda_need_gpus_per_trial():
    config = validate({"trial": {"precision": "fp16", "device": "cuda"},
                       "space": {"trial.sparsity": {"uniform": [0, 0.5]}}})
    problems = "\n".join(search_problems(config))
    assert "trial.precision = 'fp16'" in problems and "trial.device = 'cuda'" in problems
    gpu = config.with_values({"cluster.gpus_per_trial": 0.5})
    assert search_problems(gpu) == []


def test_a_bad_address_from_the_command_line_is_named_so():
    config = validate({"space": {"trial.sparsity": {"uniform": [0, 0.5]}}})
    assert any(p.startswith("--address = 'ray:/head'") for p in search_problems(config, address="ray:/head"))
