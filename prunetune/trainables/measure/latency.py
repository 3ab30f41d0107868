"""Latency: ``torch.utils.benchmark.Timer`` with warm-up, CUDA synchronisation and an explicit thread count.

What protects the figures:

- **The timing slot.** At most one latency measurement runs at a time on a node (trials,
  the teacher's baseline, re-timing): a file lock in the node's temporary directory, which
  every process of the node shares and no other node sees. It keeps two measurements from
  slowing each other; it cannot stop other trials from training on the node's other cores
  or on its GPU, which is why the front is re-timed quietly after the search.
- **Alternating rounds.** Models compared with each other (a student and the dense teacher)
  are timed in turns, round after round, so that a slow phase of the machine hits both
  instead of one.
- **Spread.** Each measurement keeps the interquartile range of its round medians relative
  to their median; a measurement wider than ``max_spread`` is taken again, and one that
  stays wide is flagged noisy.
- **Threads.** The Timer gets the thread count explicitly (its default of one thread would
  understate a CPU's speed), and it is recorded with the figures.
"""

from __future__ import annotations

import contextlib
import os
import statistics
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from filelock import FileLock
from torch import nn
from torch.utils import benchmark

#: Fewest timed runs behind a latency. Fewer would make the 95th percentile the maximum;
#: more would cost a slow model (0.5 s a forward) many seconds of timing per trial.
MIN_LATENCY_RUNS = 10
#: Seed of the random token ids fed to the model when timing it.
LATENCY_INPUT_SEED = 0
#: The node-wide lock file of the timing slot (``PRUNETUNE_TIMING_SLOT`` names another).
TIMING_SLOT_FILE = "prunetune-timing-slot.lock"
#: Measurements repeated while wider than ``max_spread``, before the figures are flagged noisy.
MAX_ATTEMPTS = 3


@dataclass(frozen=True)
class Latency:
    median_ms: float
    p95_ms: float
    runs: int  # number of timed measurements behind the figures
    # Forward passes averaged inside each timed run. The Timer batches very fast calls so
    # that its own overhead stays negligible; for those, p95 is a percentile of batch means.
    forwards_per_run: int = 1
    spread: float = 0.0  # interquartile range of the round medians / their median
    rounds: int = 1
    noisy: bool = False  # the spread stayed above max_spread after every attempt
    threads: int | None = None


# --------------------------------------------------------------------------- the timing slot

_SLOT_LOCKS: dict[str, FileLock] = {}


def timing_slot_path() -> Path:
    return Path(os.environ.get("PRUNETUNE_TIMING_SLOT", Path(tempfile.gettempdir()) / TIMING_SLOT_FILE))


@contextlib.contextmanager
def timing_slot() -> Iterator[None]:
    """Hold the node's timing slot: no other latency measurement runs on this node meanwhile.

    Re-entrant within a thread (one lock object per path), so a measurement may call another.
    """
    path = str(timing_slot_path())
    lock = _SLOT_LOCKS.setdefault(path, FileLock(path))
    with lock:
        yield


def measure_latency(
    model: nn.Module,
    *,
    batch_size: int,
    seq_len: int,
    vocab_size: int,
    device: torch.device,
    min_run_time: float = 1.0,
    threads: int | None = None,
    rounds: int = 1,
    max_spread: float = 0.1,
    token_types: bool = False,
) -> Latency:
    """Median and 95th-percentile time of one forward pass on random token ids, in the timing slot.

    The model keeps its dtype (the caller set the inference precision); it is timed in
    eval mode and its previous mode is restored afterwards.
    """
    return measure_alternating({"model": model}, batch_size=batch_size, seq_len=seq_len, vocab_size=vocab_size,
                               device=device, min_run_time=min_run_time, threads=threads, rounds=rounds,
                               max_spread=max_spread, token_types=token_types)["model"]


def measure_alternating(
    models: Mapping[str, nn.Module],
    *,
    batch_size: int,
    seq_len: int,
    vocab_size: int,
    device: torch.device,
    min_run_time: float = 1.0,
    threads: int | None = None,
    rounds: int = 5,
    max_spread: float = 0.1,
    token_types: bool = False,
) -> dict[str, Latency]:
    """Time several models in alternating rounds, in the timing slot; one Latency per name.

    Each model gets ``min_run_time`` seconds of timing in all, split over ``rounds`` rounds;
    the order of the models flips every round. A measurement whose spread exceeds
    ``max_spread`` is taken again (all models, up to MAX_ATTEMPTS times); one that stays
    wider is flagged noisy.
    """
    threads = threads or torch.get_num_threads()
    inputs = latency_inputs(batch_size=batch_size, seq_len=seq_len, vocab_size=vocab_size, device=device,
                            token_types=token_types)
    timers = {name: benchmark.Timer(stmt="model(**inputs)", globals={"model": model, "inputs": inputs},
                                    num_threads=threads) for name, model in models.items()}
    with timing_slot(), contextlib.ExitStack() as modes, torch.inference_mode():
        for model in models.values():
            modes.enter_context(eval_mode(model))
        for _ in range(MAX_ATTEMPTS):
            measured = _rounds(timers, rounds=rounds, per_round=min_run_time / rounds)
            if all(latency.spread <= max_spread for latency in measured.values()):
                break
    noisy = any(latency.spread > max_spread for latency in measured.values())
    return {name: replace(latency, noisy=noisy, threads=threads) for name, latency in measured.items()}


def _rounds(timers: Mapping[str, benchmark.Timer], *, rounds: int, per_round: float) -> dict[str, Latency]:
    """``rounds`` rounds over the timers, the order reversed every other round."""
    names = list(timers)
    times: dict[str, list[float]] = {name: [] for name in names}
    medians: dict[str, list[float]] = {name: [] for name in names}
    forwards: dict[str, int] = dict.fromkeys(names, 1)
    for index in range(rounds):
        for name in names if index % 2 == 0 else reversed(names):
            round_times, per_run = _timed_runs(timers[name], per_round, minimum=max(1, MIN_LATENCY_RUNS // rounds))
            times[name] += round_times
            medians[name].append(statistics.median(round_times))
            forwards[name] = max(forwards[name], per_run)
    return {name: summarise(times[name], forwards_per_run=forwards[name], round_medians=medians[name])
            for name in names}


def summarise(seconds: list[float], *, forwards_per_run: int = 1, round_medians: list[float] | None = None) -> Latency:
    """Median and 95th percentile (milliseconds) of per-forward times in seconds, and the
    spread of the round medians (0 for a single round)."""
    rounds = round_medians or [statistics.median(seconds)]
    return Latency(
        median_ms=statistics.median(seconds) * 1e3,
        p95_ms=float(np.percentile(seconds, 95)) * 1e3,
        runs=len(seconds),
        forwards_per_run=forwards_per_run,
        spread=relative_spread(rounds),
        rounds=len(rounds),
    )


def relative_spread(values: list[float]) -> float:
    """Interquartile range of ``values`` over their median (0 for fewer than two values)."""
    if len(values) < 2:
        return 0.0
    q25, q50, q75 = np.percentile(values, [25, 50, 75])
    return float((q75 - q25) / q50) if q50 > 0 else 0.0


def latency_inputs(*, batch_size: int, seq_len: int, vocab_size: int, device: torch.device,
                   token_types: bool = False) -> dict[str, torch.Tensor]:
    """Seeded random token ids (the same for every model timed) and a full attention mask; with
    ``token_types``, the token types of a pair (or a question and its context): the second half
    of the sequence is the second segment, as the model is fed in deployment."""
    generator = torch.Generator().manual_seed(LATENCY_INPUT_SEED)
    input_ids = torch.randint(0, vocab_size, (batch_size, seq_len), generator=generator)
    inputs = {
        "input_ids": input_ids.to(device),
        "attention_mask": torch.ones(batch_size, seq_len, dtype=torch.long, device=device),
    }
    if token_types:
        types = torch.zeros(batch_size, seq_len, dtype=torch.long)
        types[:, seq_len // 2:] = 1
        inputs["token_type_ids"] = types.to(device)
    return inputs


def uses_token_types(model) -> bool:
    """Whether a model tells two segments apart by token types (BERT, ELECTRA: yes; RoBERTa, DistilBERT: no)."""
    config = getattr(model, "config", None)
    return int(getattr(config, "type_vocab_size", 0) or 0) > 1


def _timed_runs(timer: benchmark.Timer, min_run_time: float, *,
                minimum: int = MIN_LATENCY_RUNS) -> tuple[list[float], int]:
    """Per-forward seconds of each timed run, at least ``minimum`` of them.

    ``blocked_autorange`` stops after ``min_run_time`` even when a slow model gave only
    a few runs; we then repeat it (each repeat is one more warm-up call) until enough
    runs exist. Every repeat picks its own block size, so runs are kept per forward.
    """
    measurement = timer.blocked_autorange(min_run_time=min_run_time)
    times, forwards_per_run = list(measurement.times), measurement.number_per_run
    while len(times) < minimum:
        measurement = timer.blocked_autorange(min_run_time=min_run_time)
        times += measurement.times
        forwards_per_run = max(forwards_per_run, measurement.number_per_run)
    return times, forwards_per_run


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[None]:
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


