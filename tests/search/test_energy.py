"""Trials sharing a node: each one's energy is its share of the node's, and the shares add up."""

import json

import pytest

from prunetune import metrics as M
from prunetune.names import ENERGY_FILE
from prunetune.search import run_search
from prunetune.search._results import read_rows
from prunetune.search.synthetic import SyntheticTrial, synthetic_teacher
from tests.search.conftest import synthetic_config

# Figures of time and energy: run alone, never beside another test process (`make test`).
pytestmark = pytest.mark.serial


def test_trials_energies_add_up_to_what_the_node_used_while_they_ran(tmp_path, ray_local):
    config = synthetic_config(sampler="random", num_trials=4, max_concurrent=2, reuse_actors=False)
    config = config.with_values({"trial.emissions.measure_power_secs": 0.5})
    run_search(config, run_dir=tmp_path / "run", trial_fn=SyntheticTrial(busy_seconds=1.5),
               teacher_fn=synthetic_teacher)
    rows = read_rows(tmp_path / "run" / "results.parquet")
    energies = [row[M.ENERGY_KWH] for row in rows]
    assert len(energies) == 4 and all(energy > 0 for energy in energies)
    assert all(row[M.ENERGY_ESTIMATED] == 1.0 for row in rows)  # no RAPL here: CodeCarbon estimates
    (session,) = json.loads((tmp_path / "run" / ENERGY_FILE).read_text())
    (node,) = session["nodes"].values()
    assert sum(energies) == pytest.approx(node["attributed_kwh"], rel=1e-6)  # nothing counted twice
    assert node["attributed_kwh"] <= node["node"]["energy_kwh"] * (1 + 1e-9)
