"""Energy and emissions: CodeCarbon's offline tracker around a block of work.

Emissions are part of the metric contract, so a tracker that cannot measure raises
:class:`TrialError` rather than reporting zero.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path

from prunetune.errors import TrialError


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
