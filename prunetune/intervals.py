"""95% intervals of a headline metric and of its drop: a paired bootstrap over examples.

A trial's accuracy on a few hundred examples moves by a point when three texts change
answer, so every headline figure carries an interval. Student and teacher are scored on the
*same* resampled examples (paired), which is what makes a drop of a point distinguishable
from zero when the two models disagree on few examples.

Each task kind reduces its predictions to per-example statistics whose sums give the metric
(:class:`ExampleScores`): a correct/incorrect flag or a per-example F1 (``mean``), a
prediction and its target (``pearson``), entity counts (``f1_counts``). A resample is then a
vector of multinomial weights over the examples, and the metric of every resample is one
matrix product: two thousand resamples of a few thousand examples take milliseconds, for
any kind. numpy only: the analysis reads these without importing torch.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from prunetune import metrics as M

CONFIDENCE = 0.95
RESAMPLES = 2000
#: Resamples drawn at once: bounds the weight matrix (RESAMPLES_PER_CHUNK x examples) in memory.
_CHUNK = 250


def _mean(totals: np.ndarray, count: int) -> np.ndarray:
    return totals[..., 0] / count


def _pearson(totals: np.ndarray, count: int) -> np.ndarray:
    """Pearson correlation from the sums of x, y, x^2, y^2 and xy; 0 where a side is constant
    (as the point estimate reports it)."""
    sx, sy, sxx, syy, sxy = (totals[..., i] for i in range(5))
    covariance = sxy - sx * sy / count
    spread = np.sqrt(np.clip(sxx - sx * sx / count, 0, None) * np.clip(syy - sy * sy / count, 0, None))
    with np.errstate(invalid="ignore", divide="ignore"):
        value = np.where(spread > 1e-12 * max(count, 1), covariance / spread, 0.0)
    return np.clip(value, -1.0, 1.0)


def _f1_counts(totals: np.ndarray, count: int) -> np.ndarray:
    """Micro F1 from true positives, predicted and gold entities: 2 tp / (predicted + gold)."""
    tp, predicted, gold = totals[..., 0], totals[..., 1], totals[..., 2]
    denominator = predicted + gold
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denominator > 0, 2 * tp / denominator, 0.0)


#: Form -> (statistics per example, metric of their totals over ``count`` examples).
FORMS: dict[str, tuple[int, Callable[[np.ndarray, int], np.ndarray]]] = {
    "mean": (1, _mean),
    "pearson": (5, _pearson),
    "f1_counts": (3, _f1_counts),
}


@dataclass(frozen=True)
class ExampleScores:
    """One model's per-example statistics of a headline metric on one split (row i: example i)."""

    form: str
    values: np.ndarray  # (examples, statistics of the form)

    def __post_init__(self) -> None:
        if self.form not in FORMS:
            raise ValueError(f"example scores form {self.form!r}: expected one of {', '.join(FORMS)}")
        width = FORMS[self.form][0]
        if self.values.ndim != 2 or self.values.shape[1] != width or len(self.values) == 0:
            raise ValueError(f"example scores of form {self.form!r} must be (examples > 0, {width}); "
                             f"got shape {self.values.shape}")

    def __len__(self) -> int:
        return len(self.values)

    @classmethod
    def of_mean(cls, per_example) -> "ExampleScores":
        """A metric that is a mean over examples (accuracy, QA F1): one value per example."""
        return cls("mean", np.asarray(per_example, dtype=float).reshape(-1, 1))

    @classmethod
    def of_pairs(cls, predictions, targets) -> "ExampleScores":
        """Pearson correlation of predictions and targets. Both are centred first (the correlation does
        not move), so that the sums of squares do not cancel in floating point."""
        x, y = np.asarray(predictions, dtype=float), np.asarray(targets, dtype=float)
        x, y = x - x.mean(), y - y.mean()
        return cls("pearson", np.stack([x, y, x * x, y * y, x * y], axis=1))

    @classmethod
    def of_counts(cls, true_positives, predicted, gold) -> "ExampleScores":
        """Micro F1 over entities: per-example true positives, predicted and gold entity counts."""
        return cls("f1_counts", np.stack([np.asarray(v, dtype=float) for v in (true_positives, predicted, gold)],
                                         axis=1))

    def metric(self, weights: np.ndarray | None = None) -> np.ndarray | float:
        """The metric over all examples, or over each resample (rows of ``weights``)."""
        _, reduce = FORMS[self.form]
        if weights is None:
            return float(reduce(self.values.sum(axis=0), len(self)))
        return reduce(weights @ self.values, len(self))


def _check_paired(first: ExampleScores, second: ExampleScores) -> None:
    if first.form != second.form or len(first) != len(second):
        raise ValueError(f"paired scores must share their form and examples; got {first.form} x {len(first)} and "
                         f"{second.form} x {len(second)}")


def resample_weights(count: int, *, resamples: int = RESAMPLES, seed: int = 0):
    """Bootstrap resamples of ``count`` examples as multinomial weights, in chunks (rows: resamples)."""
    rng = np.random.default_rng(seed)
    drawn = 0
    while drawn < resamples:
        size = min(_CHUNK, resamples - drawn)
        yield rng.multinomial(count, np.full(count, 1.0 / count), size=size).astype(float)
        drawn += size


def _percentiles(samples: np.ndarray, confidence: float) -> tuple[float, float]:
    tail = (1.0 - confidence) / 2 * 100
    low, high = np.percentile(samples, [tail, 100 - tail])
    return float(low), float(high)


def paired_intervals(student: ExampleScores, teacher: ExampleScores, *, metric: str, resamples: int = RESAMPLES,
                     seed: int = 0, confidence: float = CONFIDENCE) -> dict[str, tuple[float, float]]:
    """``{metric: (low, high), metric_drop: (low, high)}``: the student's metric and its drop against
    the teacher, each over the same resampled examples."""
    _check_paired(student, teacher)
    values, drops = [], []
    for weights in resample_weights(len(student), resamples=resamples, seed=seed):
        s, t = student.metric(weights), teacher.metric(weights)
        values.append(s)
        drops.append(M.quality_drop(metric, t, s))
    return {metric: _percentiles(np.concatenate(values), confidence),
            M.drop_key(metric): _percentiles(np.concatenate(drops), confidence)}


def difference_interval(first: ExampleScores, second: ExampleScores, *, resamples: int = RESAMPLES, seed: int = 0,
                        confidence: float = CONFIDENCE) -> tuple[float, float]:
    """Interval of ``first``'s metric minus ``second``'s over the same resampled examples (two
    students: the teacher cancels out of the difference of their drops)."""
    _check_paired(first, second)
    differences = [first.metric(w) - second.metric(w) for w in resample_weights(len(first), resamples=resamples,
                                                                                  seed=seed)]
    return _percentiles(np.concatenate(differences), confidence)


def interval_columns(intervals: Mapping[str, tuple[float, float]], *, suffix: str = "") -> dict[str, float]:
    """``{key: (low, high)}`` as results columns: ``<key><suffix>_ci_low`` and ``..._ci_high``."""
    columns: dict[str, float] = {}
    for key, (low, high) in intervals.items():
        low_key, high_key = M.interval_keys(f"{key}{suffix}")
        columns[low_key], columns[high_key] = low, high
    return columns


def excludes_zero(low, high) -> bool:
    """Whether an interval lies wholly on one side of zero (a difference the data show)."""
    return low > 0 or high < 0


# --------------------------------------------------------------------------- on disk


def save_example_scores(path: str | Path, split: str, scores: ExampleScores) -> None:
    """Add (or replace) ``split``'s scores in ``path`` (an .npz of plain arrays, no pickle)."""
    path = Path(path)
    kept = dict(_read_arrays(path)) if path.is_file() else {}
    kept[split], kept[f"{split}.form"] = scores.values, np.array(scores.form)
    temporary = path.with_name(f".{path.name}.tmp.npz")
    np.savez(temporary, **kept)
    temporary.replace(path)


def load_example_scores(path: str | Path, split: str) -> ExampleScores | None:
    """``split``'s scores saved in ``path``, or None when there are none."""
    path = Path(path)
    if not path.is_file():
        return None
    arrays = dict(_read_arrays(path))
    if split not in arrays:
        return None
    return ExampleScores(str(arrays[f"{split}.form"]), arrays[split])


def _read_arrays(path: Path):
    with np.load(path, allow_pickle=False) as archive:
        for name in archive.files:
            yield name, archive[name]
