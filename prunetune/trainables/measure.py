"""Honest measurement of a trial's model: latency, quality, emissions and size.

- Latency goes through ``torch.utils.benchmark.Timer``, which warms up, synchronises
  CUDA and sets the thread count for the timed region; we give it the worker's thread
  count (its default of one thread would understate a CPU's speed) and collect enough
  runs for a 95th percentile to mean something.
- Quality is accuracy and macro-F1 of argmax predictions, in eval mode, without autograd.
- Emissions come from CodeCarbon's offline tracker. They are part of the metric
  contract, so a tracker that cannot measure raises :class:`TrialError` rather than
  reporting zero.
"""

from __future__ import annotations

import contextlib
import logging
import math
import statistics
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils import benchmark

from prunetune.errors import DataError, TrialError

#: Fewest timed runs behind a latency. Fewer would make the 95th percentile the maximum;
#: more would cost a slow model (0.5 s a forward) many seconds of timing per trial.
MIN_LATENCY_RUNS = 10
#: Seed of the random token ids fed to the model when timing it.
LATENCY_INPUT_SEED = 0


# --------------------------------------------------------------------------- latency


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
    with _eval_mode(model), torch.inference_mode():
        times, forwards_per_run = _timed_runs(timer, min_run_time)
    return Latency(
        median_ms=statistics.median(times) * 1e3,
        p95_ms=float(np.percentile(times, 95)) * 1e3,
        runs=len(times),
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
def _eval_mode(model: nn.Module) -> Iterator[None]:
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


# --------------------------------------------------------------------------- quality


@dataclass(frozen=True)
class Quality:
    accuracy: float
    f1_macro: float
    predictions: tuple[int, ...]


def predict_logits(
    model: nn.Module,
    encodings: dict[str, torch.Tensor],
    *,
    device: torch.device,
    batch_size: int = 64,
    autocast: contextlib.AbstractContextManager | None = None,
) -> torch.Tensor:
    """Logits of every example, float32 on the CPU, shape (N, num_labels)."""
    total = _num_examples(encodings)
    chunks = []
    with _eval_mode(model), torch.inference_mode():
        for start in range(0, total, batch_size):
            batch = {key: value[start : start + batch_size].to(device) for key, value in encodings.items()}
            with autocast if autocast is not None else contextlib.nullcontext():
                logits = model(**batch).logits
            chunks.append(logits.float().cpu())
    return torch.cat(chunks) if chunks else torch.empty(0, 0)


def evaluate(
    model: nn.Module,
    encodings: dict[str, torch.Tensor],
    labels: Sequence[int],
    *,
    device: torch.device,
    batch_size: int = 64,
    autocast: contextlib.AbstractContextManager | None = None,
) -> Quality:
    """Accuracy and macro-F1 of the model's argmax predictions against ``labels``."""
    total = _num_examples(encodings)
    if total == 0 or total != len(labels):
        raise DataError(f"evaluate: {total} encoded examples but {len(labels)} labels; expected the same, > 0")
    logits = predict_logits(model, encodings, device=device, batch_size=batch_size, autocast=autocast)
    predictions = logits.argmax(dim=-1).tolist()
    return Quality(
        accuracy=_accuracy(predictions, labels),
        f1_macro=_f1_macro(predictions, labels),
        predictions=tuple(predictions),
    )


def _num_examples(encodings: dict[str, torch.Tensor]) -> int:
    sizes = {key: len(value) for key, value in encodings.items()}
    if len(set(sizes.values())) != 1:
        raise DataError(f"encodings: every tensor needs the same number of examples, got {sizes}")
    return next(iter(sizes.values()))


def _accuracy(predictions: Sequence[int], labels: Sequence[int]) -> float:
    return sum(int(p == y) for p, y in zip(predictions, labels)) / len(labels)


def _f1_macro(predictions: Sequence[int], labels: Sequence[int]) -> float:
    from sklearn.metrics import f1_score

    # Averaged over the classes present in the truth or the predictions; a class
    # predicted but never true scores 0 instead of warning.
    return float(f1_score(list(labels), list(predictions), average="macro", zero_division=0))


# --------------------------------------------------------------------------- size


def count_params(model: nn.Module) -> int:
    """All parameters, including the packed weights of dynamically quantised Linears
    (torch.ao keeps those outside ``parameters()``)."""
    from torch.ao.nn.quantized import Linear as QuantizedLinear  # dynamic Linear derives from it

    total = sum(p.numel() for p in model.parameters())
    for module in model.modules():
        if isinstance(module, QuantizedLinear):
            bias = module.bias()
            total += module.weight().numel() + (bias.numel() if bias is not None else 0)
    return total


# --------------------------------------------------------------------------- emissions


@dataclass(frozen=True)
class EmissionsSoFar:
    energy_kwh: float
    emissions_kg: float


class EmissionsMeter:
    """Context manager: CodeCarbon OfflineEmissionsTracker around a block of work.

    After the block: ``emissions_kg``, ``energy_kwh`` and ``duration_s``. Trials run
    side by side on one machine, so the tracker takes no lock file
    (``allow_multiple_runs``) and, by default, counts this process's share of the CPU
    (``tracking_mode="process"``) instead of charging every trial for the whole
    machine. GPU power is per device either way.
    """

    def __init__(
        self,
        *,
        country_iso_code: str = "USA",
        measure_power_secs: float = 5.0,
        output_dir: str | Path | None = None,
        tracking_mode: str = "process",
    ):
        self.country_iso_code = country_iso_code.upper()
        self.measure_power_secs = measure_power_secs
        self.output_dir = Path(output_dir) if output_dir is not None else None
        self.tracking_mode = tracking_mode
        self.emissions_kg = math.nan
        self.energy_kwh = math.nan
        self.duration_s = math.nan
        self._tracker = None
        self._log = _CodeCarbonLog()

    def __enter__(self) -> "EmissionsMeter":
        _require_known_country(self.country_iso_code)
        self._log.attach()
        try:
            self._tracker = self._new_tracker()
            self._tracker.start()  # detects the hardware first: up to seconds, not our block's
            self._started = time.perf_counter()
            self._raise_if_logged_errors("start")
        except Exception as exc:
            self._abandon()
            if isinstance(exc, TrialError):
                raise
            raise TrialError(f"emissions: CodeCarbon tracker failed to start: {exc}") from exc
        return self

    def _abandon(self) -> None:
        """Stop a half-started tracker so that its sampling threads do not outlive us."""
        with contextlib.suppress(Exception):
            if self._tracker is not None:
                self._tracker.stop()
        self._log.detach()

    def __exit__(self, exc_type, exc, traceback) -> None:
        self.duration_s = time.perf_counter() - self._started
        try:
            self._tracker.stop()
        except Exception as error:
            if exc_type is None:  # never hide the block's own exception
                raise TrialError(f"emissions: CodeCarbon tracker failed to stop: {error}") from error
        finally:
            self._log.detach()
        if exc_type is None:
            self._read_results()

    def _new_tracker(self):
        from codecarbon import OfflineEmissionsTracker, OutputMethod

        to_file = self.output_dir is not None
        if to_file:
            self.output_dir.mkdir(parents=True, exist_ok=True)
        return OfflineEmissionsTracker(
            country_iso_code=self.country_iso_code,
            measure_power_secs=self.measure_power_secs,
            output_methods=[OutputMethod.CSV] if to_file else [],
            output_dir=str(self.output_dir) if to_file else ".",
            log_level="error",
            allow_multiple_runs=True,
            tracking_mode=self.tracking_mode,
        )

    def snapshot(self) -> "EmissionsSoFar":
        """Energy and emissions since the block started, without stopping the tracker.

        Checkpoints store this so that a resumed trial reports its whole footprint. It
        makes the same two calls as CodeCarbon's own ``flush()``, minus writing outputs.
        """
        try:
            self._tracker._measure_power_and_energy_if_stale()
            data = self._tracker._prepare_emissions_data()
        except Exception as exc:
            raise TrialError(f"emissions: CodeCarbon could not report emissions so far: {exc}") from exc
        return EmissionsSoFar(energy_kwh=float(data.energy_consumed), emissions_kg=float(data.emissions))

    def _read_results(self) -> None:
        self._raise_if_logged_errors("measurement")
        data = getattr(self._tracker, "final_emissions_data", None)
        if data is None:
            raise TrialError("emissions: CodeCarbon tracker produced no data (did it start?)")
        self.energy_kwh = float(data.energy_consumed)
        self.emissions_kg = float(data.emissions)
        if not (self.energy_kwh > 0 and self.emissions_kg > 0):
            raise TrialError(
                f"emissions: CodeCarbon measured energy_kwh = {self.energy_kwh}, emissions_kg = "
                f"{self.emissions_kg} over {self.duration_s:.2f} s; expected both > 0"
            )

    def _raise_if_logged_errors(self, stage: str) -> None:
        if self._log.errors:
            errors = "; ".join(self._log.errors)
            self._log.errors.clear()
            raise TrialError(f"emissions: CodeCarbon reported errors during {stage}: {errors}")


def _require_known_country(code: str) -> None:
    # CodeCarbon only logs an unknown country and goes on with a wrong intensity;
    # refusing before the work starts saves a trial's worth of compute.
    from codecarbon.input import DataSource

    known = DataSource().get_global_energy_mix_data()
    if code not in known:
        raise TrialError(
            f"trial.emissions.country_iso_code = {code!r}: CodeCarbon has no energy mix for it; "
            f"expected a 3-letter ISO code such as USA, FRA, DEU"
        )


class _CodeCarbonLog(logging.Filter):
    """While attached: drops CodeCarbon's log records (its info and "multiple instances"
    warnings are noise in a trial's output) and keeps its errors to report them."""

    def __init__(self) -> None:
        super().__init__()
        self.errors: list[str] = []
        self._logger = logging.getLogger("codecarbon")

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.ERROR:
            self.errors.append(record.getMessage())
        return False

    def attach(self) -> None:
        self._logger.addFilter(self)

    def detach(self) -> None:
        self._logger.removeFilter(self)
