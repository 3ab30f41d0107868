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
