"""Latency measured on the nodes a model is deployed to (``search.measure_on``).

Trials train where the GPUs are; the model is served on another kind of node. With
``search.measure_on: {resources: {deploy_cpu: 1}}`` every latency figure of the search (the
latency tables, each rung's and each trial's final measurement, and the quiet re-timing) is
taken in a Ray task that asks for those resources, so it runs on a node that has them, in
that node's timing slot. The task asks for no CPU: a deploy node may offer none to training
(``ray start --num-cpus=0 --resources='{"deploy_cpu": 1}'``), and a measurement must never
wait for a CPU held by the trial that waits for it; the resource's count is how many
measurements a node takes at once (1: one at a time).

The files travel with the task (the model directory, the dense teacher's once per trial
process), so the measuring node needs no shared file system; it unpacks each set once, by
content. Each figure carries the hardware it was measured on and the node's id.

When no live node has the resources, or the node measuring is lost, the measurement fails
clearly (``MeasureNodeError``): the trial fails alone with that reason and the search goes
on and finishes. It does not wait for a node to come back.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from prunetune import metrics as M
from prunetune.errors import MeasureNodeError
from prunetune.names import RESULT_FILE

#: Seconds between checks that the measuring node is still alive while a measurement runs.
POLL_SECONDS = 1.0
#: Where a measuring node unpacks the files it is sent, one directory per content digest.
UNPACK_ROOT = Path(tempfile.gettempdir()) / "prunetune-measure"


def pack_dir(directory: str | Path, *, beside: tuple[str, ...] = ()) -> dict[str, bytes]:
    """The files of ``directory`` (recursively), by relative path, and the files named ``beside``
    it (its trial's result.json: which task it serves), as ``../<name>``."""
    root = Path(directory)
    files = {str(path.relative_to(root)): path.read_bytes() for path in sorted(root.rglob("*")) if path.is_file()}
    files.update({f"../{name}": (root.parent / name).read_bytes() for name in beside if (root.parent / name).is_file()})
    return files


def unpack_dir(files: Mapping[str, bytes], name: str = "model") -> Path:
    """``files`` written once per content under UNPACK_ROOT/<digest>/<name>; returns that directory."""
    digest = hashlib.sha256()
    for relative in sorted(files):
        digest.update(relative.encode())
        digest.update(hashlib.sha256(files[relative]).digest())
    directory = UNPACK_ROOT / digest.hexdigest()[:20] / name
    if not (directory / ".complete").is_file():
        staging = directory.with_name(f"{name}.{os.getpid()}.partial")
        for relative, content in files.items():
            # ``../name`` lands beside the directory: the staging directory's parent is its parent too.
            target = (staging.parent / relative[3:]) if relative.startswith("../") else staging / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(content)
        (staging / ".complete").write_text("")
        try:
            staging.rename(directory)
        except OSError:  # another process unpacked it first
            import shutil

            shutil.rmtree(staging, ignore_errors=True)
    return directory


def _retime_on_node(request, model_files: Mapping[str, bytes], teacher_files: Mapping[str, bytes]) -> dict[str, Any]:
    """The body of a measuring task: the request's files unpacked here and measured here."""
    import ray

    from prunetune.trainables.measure.retime import retime

    local = replace(request, model_dir=str(unpack_dir(model_files)), teacher_dir=str(unpack_dir(teacher_files)))
    return {**retime(local), M.LATENCY_NODE: ray.get_runtime_context().get_node_id()}


def _table_on_node(model_config: dict, cache_key: str, table_args: dict) -> dict:
    """The body of a table task: the latency table measured (or found) in this node's cache."""
    from prunetune.trainables.families.compaction import model_of_config
    from prunetune.trainables.measure.latency_table import cached_table

    return cached_table(model_of_config(model_config), UNPACK_ROOT / "tables" / cache_key, **table_args).to_json()


class RemoteMeasurer:
    """Runs latency measurements in tasks on the nodes that have ``resources`` (see the module docstring)."""

    def __init__(self, resources: Mapping[str, float], *, poll_seconds: float = POLL_SECONDS):
        self.resources = dict(resources)
        self.poll_seconds = poll_seconds
        self._teachers: dict[str, Any] = {}  # teacher directory -> its packed files in the object store

    def describe(self) -> str:
        return f"search.measure_on = {{resources: {self.resources}}}"

    def retime(self, request) -> dict[str, Any]:
        """``request`` (a RetimeRequest naming local directories) measured on a deploy node, on the
        device that node serves with (its GPU where it has one, else its CPU)."""
        import ray

        if request.teacher_dir not in self._teachers:
            self._teachers[request.teacher_dir] = ray.put(pack_dir(request.teacher_dir))
        model_files = pack_dir(request.model_dir, beside=(RESULT_FILE,))
        return self._call(_retime_on_node, replace(request, device="auto"), model_files,
                          self._teachers[request.teacher_dir])

    def table(self, model, cache_key: str, **table_args) -> dict:
        """The latency table of ``model``'s shape, measured on a deploy node (its JSON)."""
        return self._call(_table_on_node, model.config.to_dict(), cache_key, table_args)

    def _call(self, function: Callable, *args) -> Any:
        import ray
        from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

        self._check_nodes()
        # Outside the calling trial's placement group, which Tune's trials otherwise hand to their tasks.
        task = ray.remote(function).options(num_cpus=0, resources=self.resources, max_retries=0,
                                            scheduling_strategy=PlacementGroupSchedulingStrategy(None))
        pending = task.remote(*args)
        while True:
            ready, _ = ray.wait([pending], timeout=self.poll_seconds)
            if ready:
                try:
                    return ray.get(ready[0])
                except ray.exceptions.RayTaskError as error:  # the measurement itself raised: its own error
                    raise error.as_instanceof_cause() from None
                except ray.exceptions.RayError as error:  # the worker or its node died under it
                    raise MeasureNodeError(f"{self.describe()}: the node measuring this trial was lost "
                                           f"({type(error).__name__}); the measurement is not retried") from error
            self._check_nodes(pending)

    def _check_nodes(self, pending=None) -> None:
        import ray

        if live_nodes_with(self.resources):
            return
        if pending is not None:
            ray.cancel(pending, force=True)
        raise MeasureNodeError(f"{self.describe()}: no live node of the cluster has these resources, so this "
                               "latency cannot be measured where the model is deployed; start one (ray start "
                               f"--address ... --resources='{_resources_json(self.resources)}') or drop "
                               "search.measure_on")


def measurer_of(config) -> RemoteMeasurer | None:
    """The measurer ``search.measure_on`` asks for (None: measure where the trial runs)."""
    measure_on = config.search.measure_on
    return RemoteMeasurer(measure_on.resources) if measure_on is not None else None


def live_nodes_with(resources: Mapping[str, float]) -> list[str]:
    """Ids of the live nodes whose total resources cover ``resources``."""
    import ray

    return [node["NodeID"] for node in ray.nodes() if node.get("Alive")
            and all(node.get("Resources", {}).get(name, 0) >= amount for name, amount in resources.items())]


def _resources_json(resources: Mapping[str, float]) -> str:
    import json

    return json.dumps({name: amount for name, amount in resources.items()})
