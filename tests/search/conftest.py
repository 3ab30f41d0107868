"""A Ray instance shared by the search tests, and synthetic search configurations."""

from __future__ import annotations

import logging

import pytest

from prunetune.config import validate

SPACE = {
    "trial.sparsity": {"uniform": [0.0, 0.95]},
    "trial.temperature": {"loguniform": [1.0, 16.0]},
    "trial.block_size": {"choice": [16, 32]},
    "trial.method": {"fixed": "magnitude"},
}


def synthetic_config(*, space=None, trial=None, **search):
    """A search over the synthetic trial: no model, no data, milliseconds per trial."""
    return validate({
        # A synthetic trial serves no model: its rungs project their latency, no table is measured.
        "trial": {"max_steps": 10, "rung_latency": "measured", **(trial or {})},
        "space": space or SPACE,
        "search": {"num_trials": 6, "max_concurrent": 2, "seed": 0, "verbosity": 0, "reuse_actors": True,
                   "retime": "off", "evaluate_test": False,
                   **search},
        "cluster": {"cpus_per_trial": 1},
    })


#: A custom resource the session's Ray node has, as a deploy node would.
DEPLOY_RESOURCE = "prunetune_test_deploy"


@pytest.fixture(scope="session")
def ray_local():
    """Ray in-process once for the whole session (starting it costs seconds)."""
    import ray

    if not ray.is_initialized():
        # DEPLOY_RESOURCE: this node stands in for a deploy node (search.measure_on's tests).
        ray.init(address="local", num_cpus=2, resources={DEPLOY_RESOURCE: 1}, include_dashboard=False,
                 log_to_driver=False, logging_level=logging.WARNING)
    yield
    ray.shutdown()
