"""Energy and emissions: CodeCarbon's offline tracker, and a node's ledger that splits it among trials.

- :class:`EmissionsMeter` wraps CodeCarbon's offline tracker around a block of work. Alone
  (``prunetune trial``) a trial measures its own process that way.
- :class:`EnergyLedger` is how trials sharing a node get energies that add up: the node's
  energy is read in intervals (one machine-wide tracker per node), and each interval's
  energy is split among the trials running then, CPU and RAM by the CPU time of each
  trial's processes, GPU by each trial's GPU utilisation. The trials' energies then sum to
  the node's over the intervals they ran in, and nothing is counted twice. Intervals in
  which no trial used the CPU (scheduling gaps) stay unattributed.

Emissions are part of the metric contract, so a tracker that cannot measure raises
:class:`TrialError` rather than reporting zero. Without RAPL (or on a CPU CodeCarbon does
not know) CPU power is estimated from the CPU's TDP and its load: ``estimated`` says so.
"""

from __future__ import annotations

import contextlib
import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from prunetune.errors import TrialError

#: CodeCarbon's CPU modes that read energy counters; the others estimate power from TDP and load.
MEASURED_CPU_MODES = frozenset({"intel_rapl", "intel_power_gadget", "windows_emi", "apple_powermetrics"})


@dataclass(frozen=True)
class EmissionsSoFar:
    energy_kwh: float
    emissions_kg: float
    gpu_kwh: float = 0.0  # the part of energy_kwh the GPUs used


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
        return EmissionsSoFar(energy_kwh=float(data.energy_consumed), emissions_kg=float(data.emissions),
                              gpu_kwh=float(data.gpu_energy or 0.0))

    @property
    def estimated(self) -> bool:
        """Whether CPU power is estimated (from TDP and load) rather than read from energy counters."""
        modes = [getattr(hardware, "_mode", None) for hardware in getattr(self._tracker, "_hardware", [])
                 if type(hardware).__name__ == "CPU"]
        return not any(mode in MEASURED_CPU_MODES for mode in modes)

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


# --------------------------------------------------------------------------- the node's ledger


@dataclass(frozen=True)
class EnergyShare:
    """A trial's share of its node's energy (or the node's totals)."""

    energy_kwh: float
    emissions_kg: float
    estimated: bool = True


@dataclass(frozen=True)
class LedgerTotals:
    node: EnergyShare  # the node's energy since the ledger started
    attributed_kwh: float  # the part split among trials
    seconds: float


def split_interval(energy: float, weights: dict[str, float]) -> dict[str, float]:
    """``energy`` split in proportion to ``weights``; nothing when every weight is zero."""
    total = sum(max(weight, 0.0) for weight in weights.values())
    if total <= 0:
        return {}
    return {key: energy * max(weight, 0.0) / total for key, weight in weights.items()}


@dataclass
class _Account:
    pid: int
    cpu_seconds: float
    energy_kwh: float = 0.0
    emissions_kg: float = 0.0


@dataclass
class EnergyLedger:
    """Splits a node's energy among the trials running on it (see the module docstring).

    ``read_node`` returns the node's cumulative energy so far; ``read_cpu(pid)`` the CPU
    seconds of a process and its children; ``read_gpu(pids)`` each process's GPU
    utilisation over the last interval (None where there is no GPU). Call ``sample`` every
    few seconds; ``register``, ``energy`` and ``unregister`` sample first, so a trial's
    account starts and ends at its own moments.
    """

    read_node: Callable[[], EmissionsSoFar]
    read_cpu: Callable[[int], float]
    read_gpu: Callable[[set[int]], dict[int, float]] | None = None
    estimated: bool = True
    _accounts: dict[str, _Account] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self._start = self._last = self.read_node()
        self._started_at = time.monotonic()
        self._attributed = 0.0

    def register(self, key: str, pid: int) -> None:
        with self._lock:
            self._sample()
            self._accounts[key] = _Account(pid=pid, cpu_seconds=self._cpu(pid))

    def energy(self, key: str) -> EnergyShare:
        with self._lock:
            self._sample()
            return self._share(self._accounts[key])

    def unregister(self, key: str) -> EnergyShare:
        with self._lock:
            self._sample()
            return self._share(self._accounts.pop(key))

    def sample(self) -> None:
        with self._lock:
            self._sample()

    def totals(self) -> LedgerTotals:
        with self._lock:
            self._sample()
            node = EnergyShare(self._last.energy_kwh - self._start.energy_kwh,
                               self._last.emissions_kg - self._start.emissions_kg, self.estimated)
            return LedgerTotals(node=node, attributed_kwh=self._attributed,
                                seconds=time.monotonic() - self._started_at)

    def _share(self, account: _Account) -> EnergyShare:
        return EnergyShare(account.energy_kwh, account.emissions_kg, self.estimated)

    def _cpu(self, pid: int) -> float:
        try:
            return float(self.read_cpu(pid))
        except (ProcessLookupError, OSError):  # the process ended: it used no more CPU
            return math.nan

    def _sample(self) -> None:
        """Split the energy used since the last sample among the registered trials."""
        now = self.read_node()
        host_kwh = (now.energy_kwh - now.gpu_kwh) - (self._last.energy_kwh - self._last.gpu_kwh)
        gpu_kwh = now.gpu_kwh - self._last.gpu_kwh
        total_kwh = host_kwh + gpu_kwh
        kg_per_kwh = (now.emissions_kg - self._last.emissions_kg) / total_kwh if total_kwh > 0 else 0.0
        self._last = now
        cpu = self._cpu_deltas()
        shares = split_interval(host_kwh, cpu)
        if gpu_kwh > 0 and self.read_gpu is not None:
            pids = {account.pid: key for key, account in self._accounts.items()}
            utilisation = self.read_gpu(set(pids))
            for key, kwh in split_interval(gpu_kwh, {pids[p]: u for p, u in utilisation.items() if p in pids}).items():
                shares[key] = shares.get(key, 0.0) + kwh
        for key, kwh in shares.items():
            self._accounts[key].energy_kwh += kwh
            self._accounts[key].emissions_kg += kwh * kg_per_kwh
            self._attributed += kwh

    def _cpu_deltas(self) -> dict[str, float]:
        deltas = {}
        for key, account in self._accounts.items():
            seconds = self._cpu(account.pid)
            if math.isfinite(seconds):
                deltas[key] = seconds - account.cpu_seconds if math.isfinite(account.cpu_seconds) else 0.0
                account.cpu_seconds = seconds
        return deltas


def process_tree_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process and its living children."""
    import psutil

    try:
        root = psutil.Process(pid)
        processes = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess as exc:
        raise ProcessLookupError(pid) from exc
    total = 0.0
    for process in processes:
        with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
            times = process.cpu_times()
            total += times.user + times.system
    return total


class NvmlUtilisation:
    """Each process's summed SM utilisation samples since the last call, from NVML (all visible GPUs)."""

    def __init__(self) -> None:
        import pynvml

        self._nvml = pynvml
        pynvml.nvmlInit()
        self._handles = [pynvml.nvmlDeviceGetHandleByIndex(i) for i in range(pynvml.nvmlDeviceGetCount())]
        self._seen = {index: 0 for index in range(len(self._handles))}

    def __call__(self, pids: set[int]) -> dict[int, float]:
        utilisation: dict[int, float] = {}
        for index, handle in enumerate(self._handles):
            try:
                samples = self._nvml.nvmlDeviceGetProcessUtilization(handle, self._seen[index])
            except self._nvml.NVMLError:  # no sample since the last call, or not supported here
                continue
            for sample in samples:
                self._seen[index] = max(self._seen[index], int(sample.timeStamp))
                if sample.pid in pids:
                    utilisation[sample.pid] = utilisation.get(sample.pid, 0.0) + float(sample.smUtil)
        return utilisation
