"""Where trials run and where their files live.

- :func:`ray_cluster`: Ray in-process on this machine (default) or an existing cluster
  (``--address auto|HOST:PORT|ray://HOST:PORT``);
- :class:`RunDir`: the run directory, a local or shared path or an ``s3://`` / ``gs://``
  URI reached through pyarrow's file systems, so every node finds the teacher and the
  results;
- ready cluster configurations beside this file: ``aws.yaml`` and ``gcp.yaml`` (Ray
  autoscaler, with GPU worker types) and ``kuberay.yaml`` (RayCluster + RayJob); see
  :func:`cluster_config_path` and the README's "Running on a cluster".
"""

from pathlib import Path

from prunetune.cluster._ray import (
    RayCluster,
    address_problem,
    check_fits,
    ray_cluster,
    trial_resources,
)
from prunetune.cluster._run_dir import RunDir, cache_home, is_uri

CLUSTER_CONFIGS = ("aws.yaml", "gcp.yaml", "kuberay.yaml")


def cluster_config_path(name: str) -> Path:
    """The shipped cluster configuration ``name`` (one of :data:`CLUSTER_CONFIGS`)."""
    return Path(__file__).parent / name


__all__ = [
    "CLUSTER_CONFIGS",
    "RayCluster",
    "RunDir",
    "address_problem",
    "cache_home",
    "check_fits",
    "cluster_config_path",
    "is_uri",
    "ray_cluster",
    "trial_resources",
]
