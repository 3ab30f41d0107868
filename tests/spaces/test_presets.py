"""Every shipped preset loads and validates, including block sizes against its model."""

from __future__ import annotations

import pytest

from prunetune.config import load, preset_names
from prunetune.search import search_problems

EXPECTED = {"quickstart", "bbc-news", "paper-lowres", "nn-pruning"}


def test_the_presets_of_the_issue_are_shipped():
    assert EXPECTED <= set(preset_names())


@pytest.mark.parametrize("name", preset_names())
def test_preset_loads_validates_and_is_a_search(name):
    config = load(name, check_model=True)
    assert search_problems(config) == []
    assert any(dimension.is_searched for dimension in config.space.values())
    assert 2 <= len(config.search.objectives) <= 3
    assert config.output.dir == f"runs/{name}"


def test_the_built_in_spaces_search_the_issues_dimensions():
    searched = set()
    for name in preset_names():
        searched |= {key for key, dim in load(name).space.items() if dim.is_searched}
    for key in ("trial.sparsity", "trial.block_size", "trial.temperature", "trial.alpha", "trial.precision",
                "trial.inference_precision", "trial.method"):
        assert key in searched, key
    bbc = load("bbc-news").space
    assert bbc["trial.sparsity"].extremes() == [0.0, 0.95]
    assert bbc["trial.block_size"].kind == "choice" and bbc["trial.temperature"].kind == "loguniform"


def test_quickstart_fits_two_cpu_cores():
    config = load("quickstart")
    assert config.cluster.gpus_per_trial == 0 and config.cluster.cpus_per_trial * config.search.max_concurrent <= 2
    assert config.search.num_trials >= 8


def test_paper_lowres_is_the_full_design():
    config = load("paper-lowres")
    points = {tuple(sorted(p.items())) for p in config.search.starting_points}
    assert len(points) == 12 == config.search.num_trials


def test_the_demo_searches_what_builds_fast_models_within_a_time_budget():
    config = load("quickstart")
    searched = {key for key, dim in config.space.items() if dim.is_searched}
    assert {"trial.target_speedup", "trial.layer_distill"} <= searched
    assert (config.trial.runtime, config.trial.inference_precision) == ("onnxruntime", "int8")
    assert config.trial.sparsity is None and config.search.time_budget is not None


def test_the_cpu_preset_is_the_search_bench_front_runs():
    import importlib.util
    import sys
    from pathlib import Path

    bench = Path(__file__).resolve().parents[2] / "bench" / "front.py"
    spec = importlib.util.spec_from_file_location("bench_front", bench)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    try:
        spec.loader.exec_module(module)
    finally:
        del sys.modules[spec.name]
    assert module.PRESET == "bbc-news-cpu"
    cpu, gpu = load("bbc-news-cpu"), load("bbc-news-gpu")
    assert set(cpu.space) == {"trial.target_speedup", "trial.layer_distill", "trial.runtime",
                              "trial.inference_precision", "trial.temperature"}
    assert cpu.trial.latency.threads == cpu.cluster.cpus_per_trial == 2 and cpu.cluster.gpus_per_trial == 0
    assert gpu.trial.device == "cuda" and gpu.cluster.gpus_per_trial > 0 and gpu.trial.inference_precision == "fp16"
    assert set(gpu.space) <= set(cpu.space)
