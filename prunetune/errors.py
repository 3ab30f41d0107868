"""Every error prunetune raises on purpose derives from :class:`PrunetuneError`."""

from __future__ import annotations


class PrunetuneError(Exception):
    """Root of prunetune's errors: catch this to catch them all."""


class ConfigError(PrunetuneError, ValueError):
    """One or more configuration values are wrong.

    ``problems`` holds one line per problem, each naming the key, the value and what was
    expected, so that a user fixes everything in one go.
    """

    def __init__(self, problems: list[str] | str, *, source: str | None = None):
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        self.source = source
        where = f" in {source}" if source else ""
        count = len(self.problems)
        header = f"{count} configuration problem{'s' if count != 1 else ''}{where}:"
        super().__init__("\n".join([header, *(f"  - {p}" for p in self.problems)]))


class DataError(PrunetuneError, ValueError):
    """The dataset cannot be read or does not fit a classification task."""


class ModelError(PrunetuneError, ValueError):
    """The model cannot be loaded or does not have a supported architecture."""


class DeviceError(PrunetuneError, RuntimeError):
    """The requested precision or feature is not available on this device."""


class RunDirFullError(PrunetuneError, OSError):
    """The run directory's file system is full: the search stopped, what finished is safe."""


class TrialError(PrunetuneError, RuntimeError):
    """A trial could not produce its metrics (diverged, ran out of memory, ...)."""


class MeasureNodeError(PrunetuneError, RuntimeError):
    """No live node has the resources ``search.measure_on`` names, or the one measuring was lost."""
