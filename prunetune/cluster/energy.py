"""One energy ledger per node and search, so that trials sharing a node get energies that add up.

The first trial of a search to start on a node starts the node's ledger: a small detached
Ray actor on that node (no CPU reserved) holding an
:class:`~prunetune.trainables.measure.energy.EnergyLedger` over a machine-wide CodeCarbon
tracker. Each trial on the node registers its process with the ledger and, at its end,
receives its share of what the node used while it ran (see the ledger for the split).
When the search ends, the driver stops the ledgers and appends their totals to
``energy.json`` in the run directory, beside the sum of the trials' shares. A trial run
alone (``prunetune trial``) measures its own process instead.

Two searches on one node keep one ledger each, and each splits the whole node among its
own trials: their energies then overlap for the time both ran.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable

from prunetune.names import ENERGY_FILE

LEDGER_PREFIX = "prunetune-energy-"
#: The Ray namespace of the ledgers: named, so that the driver finds what a trial started.
LEDGER_NAMESPACE = "prunetune"


def ledger_name(search_key: str, node_id: str) -> str:
    digest = hashlib.sha256(search_key.encode()).hexdigest()[:12]
    return f"{LEDGER_PREFIX}{digest}-{node_id}"


class NodeLedger:
    """The ledger of the node it runs on (the body of the per-node Ray actor)."""

    def __init__(self, country_iso_code: str, interval_s: float):
        from prunetune.trainables.measure.energy import (
            EmissionsMeter,
            EnergyLedger,
            NvmlUtilisation,
            process_tree_cpu_seconds,
        )

        self._meter = EmissionsMeter(country_iso_code=country_iso_code, measure_power_secs=interval_s,
                                     tracking_mode="machine").__enter__()
        self._ledger = EnergyLedger(read_node=self._meter.snapshot, read_cpu=process_tree_cpu_seconds,
                                    read_gpu=_gpu_reader(NvmlUtilisation), estimated=self._meter.estimated)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample_every, args=(interval_s,), daemon=True)
        self._thread.start()

    def _sample_every(self, interval_s: float) -> None:
        while not self._stop.wait(interval_s):
            self._ledger.sample()

    def register(self, key: str, pid: int) -> None:
        self._ledger.register(key, pid)

    def energy(self, key: str):
        return self._ledger.energy(key)

    def unregister(self, key: str):
        return self._ledger.unregister(key)

    def totals(self):
        return self._ledger.totals()

    def stop(self):
        self._stop.set()
        totals = self._ledger.totals()
        self._meter.__exit__(None, None, None)
        return totals


def _gpu_reader(factory):
    """NVML's per-process utilisation where a GPU is visible; None otherwise."""
    try:
        reader = factory()
    except Exception:  # no NVML library or no driver: a CPU node
        return None
    return reader if reader._handles else None


def collect_ledgers(search_key: str, run_dir: Path) -> None:
    """Stop the search's ledgers on every node and append their totals to ``energy.json``."""
    import ray

    totals = {}
    for node in ray.nodes():
        if node.get("Alive"):
            ledger = _existing_ledger(search_key, node["NodeID"])
            if ledger is not None:
                totals[node["NodeID"]] = ledger
    if totals:
        _write_totals(run_dir, _stop_all(totals))


def _stop_all(ledgers: dict[str, Any]) -> dict[str, Any]:
    import ray

    totals = {}
    for node_id, ledger in ledgers.items():
        try:
            totals[node_id] = ray.get(ledger.stop.remote(), timeout=60)
        except Exception:  # a node that died took its ledger with it
            continue
        ray.kill(ledger)
    return totals


def _write_totals(run_dir: Path, totals: dict[str, Any]) -> None:
    """Append this session's totals to energy.json (a resumed search adds a session)."""
    path = Path(run_dir) / ENERGY_FILE
    sessions = json.loads(path.read_text()) if path.is_file() else []
    sessions.append({"finished_at": time.time(),
                     "nodes": {node: {"node": asdict(t.node), "attributed_kwh": t.attributed_kwh,
                                      "seconds": t.seconds} for node, t in totals.items()}})
    path.write_text(json.dumps(sessions, indent=2))


class LedgerMeter:
    """A trial's energy from its node's ledger, in the shape of ``EmissionsMeter``."""

    def __init__(self, ledger, key: str):
        self._ledger, self._key = ledger, key
        self.energy_kwh = self.emissions_kg = float("nan")
        self.estimated = True

    def __enter__(self) -> "LedgerMeter":
        import ray

        ray.get(self._ledger.register.remote(self._key, os.getpid()))
        return self

    def snapshot(self):
        import ray

        from prunetune.trainables.measure.energy import EmissionsSoFar

        share = ray.get(self._ledger.energy.remote(self._key))
        return EmissionsSoFar(energy_kwh=share.energy_kwh, emissions_kg=share.emissions_kg)

    def __exit__(self, exc_type, exc, traceback) -> None:
        import ray

        share = ray.get(self._ledger.unregister.remote(self._key))
        self.energy_kwh, self.emissions_kg, self.estimated = share.energy_kwh, share.emissions_kg, share.estimated


def ledger_meter_factory(trial_id: str, *, search_key: str, country_iso_code: str,
                         interval_s: float) -> Callable[[], LedgerMeter]:
    """``() -> meter`` of a trial's share of its node: the search's ledger on this node, started if needed.

    Nothing starts until the trial enters the meter, so a trial that measures no energy
    costs no ledger.
    """

    def meter() -> LedgerMeter:
        ledger = _node_ledger(search_key, country_iso_code=country_iso_code, interval_s=interval_s)
        return LedgerMeter(ledger, f"{trial_id}:{os.getpid()}:{time.time():.3f}")

    return meter


def _node_ledger(search_key: str, *, country_iso_code: str, interval_s: float):
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    node_id = ray.get_runtime_context().get_node_id()
    # Detached: it outlives the trial that started it; the driver stops it when the search ends.
    return ray.remote(num_cpus=0)(NodeLedger).options(
        name=ledger_name(search_key, node_id), namespace=LEDGER_NAMESPACE, get_if_exists=True, lifetime="detached",
        max_concurrency=8,
        scheduling_strategy=NodeAffinitySchedulingStrategy(node_id=node_id, soft=False),
    ).remote(country_iso_code, interval_s)


def _existing_ledger(search_key: str, node_id: str):
    import ray

    try:
        return ray.get_actor(ledger_name(search_key, node_id), namespace=LEDGER_NAMESPACE)
    except ValueError:
        return None
