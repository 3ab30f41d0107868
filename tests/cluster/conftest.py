"""Markers of the cluster tests, and the search tests' shared Ray instance."""

from tests.search.conftest import ray_local  # noqa: F401  (a fixture for this directory too)


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "cluster: starts a real two-node Ray cluster on this machine (PRUNETUNE_SKIP_CLUSTER_TESTS=1 skips)"
    )
