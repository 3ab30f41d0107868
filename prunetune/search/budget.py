"""``search.time_budget``: the wall-clock time a search may take, beside or instead of ``num_trials``.

The clock runs from the moment the search starts (the teacher's fine-tuning and the latency
tables included: what a user waits for) and whichever of the budget and ``num_trials`` is
reached first ends the search. A trial is the unit of work, so none is cut short: no trial
starts once less time is left than a finished trial took (the median of those that ran to
their end), and the trials running then finish. Trials an early-stopping scheduler stops
free their time for more trials, which is how stopping buys a better front under a budget.

The time spent is kept in ``budget.json`` as each trial ends, so that ``--resume`` goes on with
the budget that was left (the time the search was not running does not count).
"""

from __future__ import annotations

import json
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prunetune.names import BUDGET_FILE


@dataclass
class TimeBudget:
    """The search's budget: ``seconds`` in all, ``spent_before`` of them by earlier sessions."""

    seconds: float
    spent_before: float = 0.0
    trial_seconds: list[float] = field(default_factory=list)  # wall time of each trial that ran to its end
    path: str | None = None  # budget.json, rewritten as trials end
    started: float = field(default_factory=lambda: _now())

    @classmethod
    def of(cls, config, run_dir: Path, *, resumed: bool = False) -> "TimeBudget | None":
        """The budget of a search (None without ``search.time_budget``); a resume reads what was left."""
        seconds = config.search.time_budget
        if seconds is None:
            return None
        path = Path(run_dir) / BUDGET_FILE
        saved = _read(path) if resumed else {}
        return cls(seconds=float(seconds), spent_before=float(saved.get("spent_seconds", 0.0)),
                   trial_seconds=[float(s) for s in saved.get("trial_seconds", [])], path=str(path))

    def spent(self) -> float:
        return self.spent_before + (_now() - self.started)

    def left(self) -> float:
        return max(0.0, self.seconds - self.spent())

    def typical_trial(self) -> float | None:
        """The median wall time of the trials that ran to their end (None before the first)."""
        return statistics.median(self.trial_seconds) if self.trial_seconds else None

    def starts_another(self) -> bool:
        """Whether a new trial may start: time is left, and at least a typical trial's."""
        left, typical = self.left(), self.typical_trial()
        return left > 0 and (typical is None or left >= typical)

    def trial_ended(self, seconds: float | None) -> None:
        """Record a trial that ran to its end (its wall time), and save the budget."""
        if seconds is not None and seconds > 0:
            self.trial_seconds.append(float(seconds))
        self.save()

    def save(self) -> None:
        if self.path is None:
            return
        state = {"seconds": self.seconds, "spent_seconds": self.spent(), "trial_seconds": self.trial_seconds}
        target = Path(self.path)
        temporary = target.with_name(f".{target.name}.tmp")
        temporary.write_text(json.dumps(state, indent=2))
        temporary.replace(target)

    def describe(self) -> str:
        """``budget 6m10s left of 10m`` (progress lines, the search's last lines)."""
        return f"budget {format_duration(self.left())} left of {format_duration(self.seconds)}"


def _now() -> float:
    """Wall-clock seconds: a budget spans driver processes, so a monotonic clock would not do."""
    return time.time()


def format_duration(seconds: float) -> str:
    """600 -> ``10m``, 5410 -> ``1h30m10s``, 42.4 -> ``42s``."""
    whole = int(round(seconds))
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    parts = [f"{hours}h" if hours else "", f"{minutes}m" if minutes else "", f"{secs}s" if secs or not whole else ""]
    return "".join(parts)


def _read(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):  # no file yet (killed before a trial ended): nothing spent on record
        return {}
