"""What makes the latency and energy figures trustworthy: the timing slot, alternating rounds,
the spread and its flag, and an energy split that adds up."""

from __future__ import annotations

import subprocess
import sys
import time
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from prunetune.trainables.measure import latency as L
from prunetune.trainables.measure.energy import (
    EmissionsSoFar,
    EnergyLedger,
    split_interval,
)

# Figures of time and energy: run alone, never beside another test process (`make test`).
pytestmark = pytest.mark.serial

CPU = torch.device("cpu")


class Constant(nn.Module):
    def forward(self, input_ids, attention_mask):
        return SimpleNamespace(logits=torch.zeros(len(input_ids), 2))


class RecordingTimer:
    """Stands for torch's Timer: keeps the model it would time."""

    def __init__(self, stmt, globals, num_threads):
        self.model, self.num_threads = globals["model"], num_threads


@pytest.fixture
def fake_timer(monkeypatch):
    monkeypatch.setattr(L.benchmark, "Timer", RecordingTimer)


def test_a_second_timer_waits_for_the_slot(tmp_path, monkeypatch):
    slot = tmp_path / "slot.lock"
    monkeypatch.setenv("PRUNETUNE_TIMING_SLOT", str(slot))
    held = tmp_path / "held"
    holder = subprocess.Popen([sys.executable, "-c", (
        "import os, time, pathlib\n"
        "from prunetune.trainables.measure.latency import timing_slot\n"
        "with timing_slot():\n"
        f"    pathlib.Path({str(held)!r}).write_text('yes')\n"
        "    time.sleep(1.5)\n")], env={**__import__("os").environ, "PRUNETUNE_TIMING_SLOT": str(slot)})
    try:
        deadline = time.monotonic() + 60
        while not held.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert held.exists(), "the other process never took the slot"
        started = time.monotonic()
        L.measure_latency(Constant(), batch_size=1, seq_len=4, vocab_size=10, device=CPU, min_run_time=0.01)
        assert time.monotonic() - started > 1.0  # it waited for the other measurement to end
    finally:
        holder.wait(timeout=60)


def test_models_are_timed_in_alternating_rounds(monkeypatch, fake_timer):
    order = []

    def fake_runs(timer, min_run_time, *, minimum):
        order.append(timer.model.name)
        return [0.001] * minimum, 1

    monkeypatch.setattr(L, "_timed_runs", fake_runs)
    student, teacher = Constant(), Constant()
    student.name, teacher.name = "s", "t"
    L.measure_alternating({"student": student, "teacher": teacher}, batch_size=1, seq_len=4, vocab_size=10,
                          device=CPU, rounds=4)
    assert order == ["s", "t", "t", "s", "s", "t", "t", "s"]  # a slow phase hits both


def test_a_wide_spread_is_measured_again_then_flagged_noisy(monkeypatch, fake_timer):
    calls = []

    def alternating_speed(timer, min_run_time, *, minimum):
        calls.append(1)
        return [0.001 if len(calls) % 2 else 0.003] * minimum, 1  # every other round 3x slower

    monkeypatch.setattr(L, "_timed_runs", alternating_speed)
    timed = L.measure_alternating({"m": Constant()}, batch_size=1, seq_len=4, vocab_size=10, device=CPU, rounds=5,
                                  max_spread=0.1, threads=2)["m"]
    assert len(calls) == 5 * L.MAX_ATTEMPTS  # repeated, because it stayed wide
    assert timed.noisy and timed.spread > 0.1 and timed.threads == 2 and timed.rounds == 5


def test_a_steady_measurement_is_taken_once_and_not_noisy(monkeypatch, fake_timer):
    calls = []

    def steady(timer, min_run_time, *, minimum):
        calls.append(1)
        return [0.002] * minimum, 1

    monkeypatch.setattr(L, "_timed_runs", steady)
    timed = L.measure_alternating({"m": Constant()}, batch_size=1, seq_len=4, vocab_size=10, device=CPU, rounds=5)
    assert len(calls) == 5 and not timed["m"].noisy and timed["m"].spread == 0.0


# --------------------------------------------------------------------------- energy


def test_an_interval_is_split_by_weight_and_an_idle_one_not_at_all():
    assert split_interval(9.0, {"a": 1.0, "b": 2.0}) == {"a": 3.0, "b": 6.0}
    assert split_interval(9.0, {"a": 0.0}) == {}


class Node:
    """A node whose cumulative energy and processes' CPU seconds a test scripts."""

    def __init__(self):
        self.kwh = self.gpu = 0.0
        self.cpu = {}

    def read(self):
        return EmissionsSoFar(energy_kwh=self.kwh, emissions_kg=self.kwh * 0.4, gpu_kwh=self.gpu)


def test_trials_sharing_a_node_split_its_energy_by_their_cpu_time():
    node = Node()
    node.cpu = {1: 0.0, 2: 0.0}
    ledger = EnergyLedger(read_node=node.read, read_cpu=lambda pid: node.cpu[pid])
    ledger.register("a", 1)
    node.kwh, node.cpu[1] = 1.0, 10.0  # a alone: all of it
    ledger.register("b", 2)
    node.kwh, node.cpu[1], node.cpu[2] = 4.0, 20.0, 30.0  # 3 kWh, split 10 : 30
    first = ledger.unregister("a")
    node.kwh, node.cpu[2] = 4.5, 31.0  # an idle tail: b used 1 s, takes it all
    second = ledger.unregister("b")
    assert first.energy_kwh == pytest.approx(1.0 + 0.75) and second.energy_kwh == pytest.approx(2.25 + 0.5)
    assert first.emissions_kg == pytest.approx(0.4 * first.energy_kwh)
    totals = ledger.totals()
    assert first.energy_kwh + second.energy_kwh == pytest.approx(totals.node.energy_kwh)  # nothing twice, nothing lost
    assert totals.attributed_kwh == pytest.approx(4.5)


def test_energy_nobody_used_the_cpu_for_stays_unattributed():
    node = Node()
    node.cpu = {1: 0.0}
    ledger = EnergyLedger(read_node=node.read, read_cpu=lambda pid: node.cpu[pid])
    ledger.register("a", 1)
    node.kwh = 2.0  # the trial waited: no CPU
    share = ledger.unregister("a")
    assert share.energy_kwh == 0.0 and ledger.totals().node.energy_kwh == 2.0


def test_gpu_energy_follows_gpu_utilisation_not_cpu_time():
    node = Node()
    node.cpu = {1: 0.0, 2: 0.0}
    utilisation = {1: 90.0, 2: 10.0}
    ledger = EnergyLedger(read_node=node.read, read_cpu=lambda pid: node.cpu[pid],
                          read_gpu=lambda pids: {pid: utilisation[pid] for pid in pids})
    ledger.register("a", 1)
    ledger.register("b", 2)
    node.kwh, node.gpu, node.cpu[1], node.cpu[2] = 3.0, 2.0, 5.0, 5.0  # 1 kWh of host, 2 of GPU
    a, b = ledger.unregister("a"), ledger.unregister("b")
    assert a.energy_kwh == pytest.approx(0.5 + 1.8) and b.energy_kwh == pytest.approx(0.5 + 0.2)
