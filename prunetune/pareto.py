"""Non-dominated sets, shared by the search (progress) and the analysis (fronts, plots).

Thin wrapper over moocore, which expects minimisation: maximised objectives are negated.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from prunetune.errors import ConfigError


def as_minimisation(values: np.ndarray, directions: Sequence[str]) -> np.ndarray:
    """Flip the sign of the ``"max"`` columns so that every column is minimised."""
    values = np.asarray(values, dtype=float)
    if values.ndim != 2 or values.shape[1] != len(directions):
        raise ConfigError(f"expected a (n, {len(directions)}) array of objective values, got {values.shape}")
    signs = np.array([_sign(d) for d in directions])
    return values * signs


def nondominated_mask(values: np.ndarray, directions: Sequence[str]) -> np.ndarray:
    """Boolean mask of the rows of ``values`` that no other row dominates (NaN rows excluded)."""
    import moocore

    minimised = as_minimisation(values, directions)
    finite = np.isfinite(minimised).all(axis=1)
    mask = np.zeros(len(minimised), dtype=bool)
    if finite.any():
        mask[finite] = moocore.is_nondominated(minimised[finite], keep_weakly=True)
    return mask


def _sign(direction: str) -> float:
    if direction not in ("min", "max"):
        raise ConfigError(f"objective direction = {direction!r}: expected 'min' or 'max'")
    return -1.0 if direction == "max" else 1.0
