"""Joining a cluster: address checks, the token hint, trial resources and what fits."""

from __future__ import annotations

import pytest

from prunetune.cluster import RayCluster, check_fits, ray_cluster, trial_resources
from prunetune.cluster._ray import _connection_problem
from prunetune.errors import ConfigError


def test_a_malformed_address_fails_before_ray_starts():
    with pytest.raises(ConfigError, match="cluster.address = 'head'"):
        with ray_cluster(address="head"):
            pass


def test_connection_problem_names_the_token(monkeypatch):
    monkeypatch.delenv("RAY_AUTH_MODE", raising=False)
    text = _connection_problem("10.0.0.5:6379", ConnectionError("Failed to connect"))
    assert "10.0.0.5:6379" in text and "RAY_AUTH_MODE=token" in text
    monkeypatch.setenv("RAY_AUTH_MODE", "token")
    assert "RAY_AUTH_MODE" not in _connection_problem("10.0.0.5:6379", ConnectionError("x"))


def test_trial_resources_allow_gpu_fractions():
    assert trial_resources(2, 0.25) == {"cpu": 2, "gpu": 0.25}


def cluster(address=None, cpus=2.0, gpus=0.0):
    return RayCluster(address=address, num_nodes=1, resources={}, max_cpus_per_node=cpus, max_gpus_per_node=gpus)


def test_a_trial_no_node_can_hold_is_an_error_locally_and_a_warning_on_a_cluster(caplog):
    with pytest.raises(ConfigError, match="cluster.gpus_per_trial = 0.5: the largest node"):
        check_fits(cluster(), 1, 0.5)
    check_fits(cluster(address="auto"), 4, 1)  # an autoscaler may add such nodes
    assert "autoscaler" in caplog.text
    check_fits(cluster(gpus=1.0), 2, 0.25)
