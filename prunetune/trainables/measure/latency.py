"""Latency: ``torch.utils.benchmark.Timer`` with warm-up, CUDA synchronisation and an explicit thread count.

We give the Timer the thread count the trial measures with (its default of one thread
would understate a CPU's speed) and collect enough runs for a 95th percentile to mean
something.
"""

from __future__ import annotations

import contextlib
import statistics
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.utils import benchmark

#: Fewest timed runs behind a latency. Fewer would make the 95th percentile the maximum;
#: more would cost a slow model (0.5 s a forward) many seconds of timing per trial.
MIN_LATENCY_RUNS = 10
#: Seed of the random token ids fed to the model when timing it.
LATENCY_INPUT_SEED = 0


@dataclass(frozen=True)
class Latency:
    median_ms: float
    p95_ms: float
    runs: int  # number of timed measurements behind the figures
    # Forward passes averaged inside each timed run. The Timer batches very fast calls so
    # that its own overhead stays negligible; for those, p95 is a percentile of batch means.
    forwards_per_run: int = 1


def measure_latency(
    model: nn.Module,
    *,
    batch_size: int,
    seq_len: int,
    vocab_size: int,
    device: torch.device,
    min_run_time: float = 1.0,
    threads: int | None = None,
) -> Latency:
    """Median and 95th-percentile time of one forward pass on random token ids.

    The model keeps its dtype (the caller set the inference precision); it is timed in
    eval mode and its previous mode is restored afterwards.
    """
    inputs = latency_inputs(batch_size=batch_size, seq_len=seq_len, vocab_size=vocab_size, device=device)
    timer = benchmark.Timer(
        stmt="model(**inputs)",
        globals={"model": model, "inputs": inputs},
        num_threads=threads or torch.get_num_threads(),
    )
    with eval_mode(model), torch.inference_mode():
        times, forwards_per_run = _timed_runs(timer, min_run_time)
    return summarise(times, forwards_per_run=forwards_per_run)


def summarise(seconds: list[float], *, forwards_per_run: int = 1) -> Latency:
    """Median and 95th percentile (milliseconds) of per-forward times in seconds."""
    return Latency(
        median_ms=statistics.median(seconds) * 1e3,
        p95_ms=float(np.percentile(seconds, 95)) * 1e3,
        runs=len(seconds),
        forwards_per_run=forwards_per_run,
    )


def latency_inputs(*, batch_size: int, seq_len: int, vocab_size: int, device: torch.device) -> dict[str, torch.Tensor]:
    """Seeded random token ids (the same for every model timed) and a full attention mask."""
    generator = torch.Generator().manual_seed(LATENCY_INPUT_SEED)
    input_ids = torch.randint(0, vocab_size, (batch_size, seq_len), generator=generator)
    return {
        "input_ids": input_ids.to(device),
        "attention_mask": torch.ones(batch_size, seq_len, dtype=torch.long, device=device),
    }


def _timed_runs(timer: benchmark.Timer, min_run_time: float) -> tuple[list[float], int]:
    """Per-forward seconds of each timed run, at least MIN_LATENCY_RUNS of them.

    ``blocked_autorange`` stops after ``min_run_time`` even when a slow model gave only
    a few runs; we then repeat it (each repeat is one more warm-up call) until enough
    runs exist. Every repeat picks its own block size, so runs are kept per forward.
    """
    measurement = timer.blocked_autorange(min_run_time=min_run_time)
    times, forwards_per_run = list(measurement.times), measurement.number_per_run
    while len(times) < MIN_LATENCY_RUNS:
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


