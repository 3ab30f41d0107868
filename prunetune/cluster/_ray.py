"""Where trials run: Ray in-process on this machine, or an existing Ray cluster.

Local mode passes ``address="local"``: a bare ``ray.init()`` would join whatever cluster a
``ray start`` on this machine last announced, which is not what "local" means. Joining a
cluster (``auto``, ``HOST:PORT`` or ``ray://HOST:PORT``) uses Ray's token authentication
as the cluster set it up (the token under the user's home, or ``RAY_AUTH_TOKEN``).
"""

from __future__ import annotations

import logging
import os
import re
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator

from prunetune.errors import ConfigError

logger = logging.getLogger(__name__)

ADDRESS_PATTERN = re.compile(r"^(auto|local|(ray://)?[A-Za-z0-9_.\-\[\]:]+:\d{1,5})$")


def address_problem(address: str | None, *, key: str = "cluster.address") -> str | None:
    if address is None or ADDRESS_PATTERN.match(address):
        return None
    return f"{key} = {address!r}: expected auto, HOST:PORT or ray://HOST:PORT (null: local Ray)"


@dataclass(frozen=True)
class RayCluster:
    """What the search learned about the cluster it runs on."""

    address: str | None
    num_nodes: int
    resources: dict
    max_cpus_per_node: float
    max_gpus_per_node: float

    @property
    def is_local(self) -> bool:
        return self.address in (None, "local")


@contextmanager
def ray_cluster(
    *,
    address: str | None = None,
    num_cpus: int | None = None,
    num_gpus: int | None = None,
    verbosity: int = 1,
) -> Iterator[RayCluster]:
    """Start local Ray or join a cluster; shut down on exit only what this call started."""
    import ray

    problem = address_problem(address)
    if problem:
        raise ConfigError(problem)
    started = not ray.is_initialized()
    if started:
        _init(address, num_cpus, num_gpus, verbosity)
    try:
        yield _describe(address)
    finally:
        if started:
            ray.shutdown()


def _init(address: str | None, num_cpus: int | None, num_gpus: int | None, verbosity: int) -> None:
    import ray

    try:
        ray.init(**_init_arguments(address, num_cpus, num_gpus, verbosity))
    except (ConnectionError, RuntimeError) as exc:
        if address in (None, "local"):
            raise
        raise ConfigError(_connection_problem(address, exc)) from exc


def _connection_problem(address: str, exc: Exception) -> str:
    problem = f"cluster address {address!r}: cannot join the Ray cluster there ({type(exc).__name__}: {exc})"
    if os.environ.get("RAY_AUTH_MODE") is None and address != "auto":
        # Ray sends its token to an explicit address only when told to.
        problem += (
            "; clusters started by Ray >= 2.60 require token authentication: set RAY_AUTH_MODE=token "
            "and make the cluster's token available (~/.ray/auth_token, RAY_AUTH_TOKEN_PATH or RAY_AUTH_TOKEN)"
        )
    return problem


def _init_arguments(address: str | None, num_cpus: int | None, num_gpus: int | None, verbosity: int) -> dict:
    arguments = {
        "log_to_driver": verbosity >= 2,
        "logging_level": logging.INFO if verbosity >= 3 else logging.WARNING,
    }
    if address in (None, "local"):
        return {**arguments, "address": "local", "num_cpus": num_cpus, "num_gpus": num_gpus,
                "include_dashboard": False}
    return {**arguments, "address": address}


def _describe(address: str | None) -> RayCluster:
    import ray

    nodes = [node.get("Resources", {}) for node in ray.nodes() if node.get("Alive")]
    return RayCluster(
        address=address,
        num_nodes=len(nodes),
        resources=dict(ray.cluster_resources()),
        max_cpus_per_node=max((node.get("CPU", 0.0) for node in nodes), default=0.0),
        max_gpus_per_node=max((node.get("GPU", 0.0) for node in nodes), default=0.0),
    )


def trial_resources(cpus_per_trial: float, gpus_per_trial: float) -> dict[str, float]:
    """Ray's resource request of one trial; fractional GPUs pack several trials on one device."""
    return {"cpu": cpus_per_trial, "gpu": gpus_per_trial}


def check_fits(cluster: RayCluster, cpus_per_trial: float, gpus_per_trial: float) -> None:
    """A trial that no node can hold would wait forever: fail now on a fixed (local) cluster.

    An autoscaling cluster may add such nodes later, so there it is only a warning.
    """
    problems = []
    for name, wanted, have, key in (
        ("CPU", cpus_per_trial, cluster.max_cpus_per_node, "cluster.cpus_per_trial"),
        ("GPU", gpus_per_trial, cluster.max_gpus_per_node, "cluster.gpus_per_trial"),
    ):
        if wanted > have:
            problems.append(f"{key} = {wanted}: the largest node of this Ray cluster has {have:g} {name}s")
    if not problems:
        return
    if cluster.is_local:
        raise ConfigError(problems)
    for problem in problems:
        logger.warning("%s; trials wait until the autoscaler adds such a node", problem)

