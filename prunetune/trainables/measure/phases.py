"""Where a trial's wall time goes: named phases, each a sum of the spans spent in it."""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager


class PhaseClock:
    """``with clock.phase(M.DATA_SECONDS): ...`` adds the span to that phase's total."""

    def __init__(self) -> None:
        self._seconds: defaultdict[str, float] = defaultdict(float)

    @contextmanager
    def phase(self, key: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            self._seconds[key] += time.perf_counter() - started

    def totals(self) -> dict[str, float]:
        """Seconds per phase so far (the metric keys of the phases entered)."""
        return dict(self._seconds)
