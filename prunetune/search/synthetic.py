"""A synthetic trial and teacher: the shape of ``run_trial`` and ``prepare_teacher``, no model.

They exercise the search machinery (sampling, reporting, checkpoints, failures, resume,
results) in milliseconds, and measure its overhead: ``bench/search_overhead.py`` times a
search of synthetic trials against the trials' own time. Metrics are smooth functions of
the sampled configuration (more sparsity: faster, smaller, less accurate), so samplers
have a real front to find. Importing this module imports neither torch nor Ray.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import signal
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from prunetune import metrics as M
from prunetune.errors import TrialError
from prunetune.names import CHECKPOINT_DIR, MODEL_DIR, RESULT_FILE

#: One line per start of the trial (first run or resume), so tests can count re-runs.
STARTS_FILE = "starts.log"
#: Written by a trial just before it kills its own worker process.
KILLED_FILE = "killed"

TEACHER_ACCURACY = 0.95
TEACHER_LATENCY_MS = 10.0
#: How much slower the synthetic trials' in-search latency is than their quiet re-timing.
IN_SEARCH_SLOWDOWN = 1.3


@dataclass(frozen=True)
class SyntheticTeacherArtifacts:
    model_dir: Path
    key: str
    baseline: dict


def synthetic_teacher(config, *, progress: bool = False) -> SyntheticTeacherArtifacts:
    """Write a teacher's baseline under ``teacher.cache_dir`` (no model is trained)."""
    key = hashlib.sha256(json.dumps(config.teacher.model_dump(exclude={"cache_dir"}), sort_keys=True).encode()).hexdigest()[:16]
    cache = config.teacher.cache_dir or Path(tempfile.gettempdir()) / "prunetune-synthetic-teachers"
    root = Path(cache) / key
    (root / "model").mkdir(parents=True, exist_ok=True)
    baseline = {
        M.ACCURACY: TEACHER_ACCURACY, M.F1_MACRO: TEACHER_ACCURACY, M.LATENCY_MS: TEACHER_LATENCY_MS,
        M.LATENCY_P95_MS: TEACHER_LATENCY_MS * 1.1, M.PARAMS: 1_000_000, M.EMISSIONS_KG: 1e-5,
        M.ENERGY_KWH: 3e-5, M.TRAIN_SECONDS: 0.0, M.LATENCY_THREADS: 1,
    }
    # Written whole under a new name and moved into place: searches sharing the cache never read half a file.
    staged = root / f"baseline.json.{os.getpid()}"
    staged.write_text(json.dumps(baseline))
    os.replace(staged, root / "baseline.json")
    return SyntheticTeacherArtifacts(model_dir=root / "model", key=key, baseline=baseline)


@dataclass(frozen=True)
class SyntheticTrial:
    """Callable like ``run_trial``: ``trial(config, output_dir=..., report=..., progress=...)``.

    ``steps`` intermediate reports, each after ``seconds_per_step`` of sleep and with a
    checkpoint; a trial resumes from ``output_dir/checkpoint``. With ``busy_seconds`` the
    trial keeps a CPU busy that long inside its energy meter and reports the meter's energy
    (its share of the node, in a search). ``fail_above`` makes every
    trial whose ``trial.sparsity`` exceeds it raise :class:`TrialError` (a known bad region);
    ``nan_above`` makes those trials report a NaN accuracy instead.
    """

    steps: int = 2
    seconds_per_step: float = 0.0
    fail_above: float | None = None
    nan_above: float | None = None
    busy_seconds: float = 0.0
    kill_at_step: int | None = None  # SIGKILL the worker there once per trial, as the OOM killer would
    model_bytes: int = 0  # the size of the model the trial saves (to fill a disk in tests)

    def __call__(self, config, *, output_dir, report: Callable | None = None, progress: bool = False,
                 energy_meter: Callable | None = None) -> dict[str, Any]:
        started = time.perf_counter()
        output_dir = Path(output_dir)
        output_dir.mkdir(parents=True, exist_ok=True)
        report = report or (lambda metrics, checkpoint_dir: None)
        first_step = _load_step(output_dir)
        with (output_dir / STARTS_FILE).open("a") as starts:
            starts.write(f"{first_step}\n")
        sparsity = config.trial.sparsity
        if self.fail_above is not None and sparsity > self.fail_above:
            raise TrialError(f"synthetic failure: trial.sparsity = {sparsity:.3f} > {self.fail_above}")
        for step in range(first_step + 1, self.steps + 1):
            time.sleep(self.seconds_per_step)
            report(self._intermediate(config, step), _save_step(output_dir, step))
            self._maybe_die(output_dir, step)
        final = self._final(config, time.perf_counter() - started, first_step)
        if self.busy_seconds and energy_meter is not None:
            final.update(_busy_energy(energy_meter, self.busy_seconds * (0.5 + config.trial.sparsity)))
        if self.nan_above is not None and sparsity > self.nan_above:
            final[M.ACCURACY] = math.nan
        report({**final, M.DONE: True}, None)
        (output_dir / MODEL_DIR).mkdir(exist_ok=True)
        (output_dir / MODEL_DIR / "synthetic.json").write_text(json.dumps(config.trial.model_dump(mode="json")))
        if self.model_bytes:
            (output_dir / MODEL_DIR / "weights.bin").write_bytes(os.urandom(self.model_bytes))
        (output_dir / RESULT_FILE).write_text(json.dumps({"metrics": final, "config": config.to_dict()}))
        return final

    def _maybe_die(self, output_dir: Path, step: int) -> None:
        marker = output_dir / KILLED_FILE
        if step == self.kill_at_step and not marker.exists():
            marker.write_text(str(step))
            os.kill(os.getpid(), signal.SIGKILL)

    def _intermediate(self, config, step: int) -> dict[str, Any]:
        fraction = step / self.steps
        report = {M.STEP: step, M.TRAIN_LOSS: 1.0 / (1 + step), M.CURRENT_SPARSITY: config.trial.sparsity * fraction,
                  M.ACCURACY: _accuracy(config.trial) * fraction, M.DONE: False}
        if config.trial.report_objectives:  # what it would score if it stopped here
            final = self._final(config, 0.0, 0)
            report.update({key: final[key] for key in M.RUNG_METRICS if key != M.ACCURACY})
            report[M.ACCURACY_DROP] = TEACHER_ACCURACY - report[M.ACCURACY]
            if self.nan_above is not None and config.trial.sparsity > self.nan_above:
                report[M.ACCURACY] = math.nan
        return report

    def _final(self, config, seconds: float, resumed_from: int) -> dict[str, Any]:
        trial = config.trial
        sparsity = trial.sparsity
        kept = 1.0 - sparsity
        accuracy = _accuracy(trial)
        latency = _latency(trial.model_dump(mode="json"))
        emissions = 1e-6 * trial.max_steps * (0.5 + kept) * (0.7 if trial.precision != "fp32" else 1.0)
        return {
            M.ACCURACY: accuracy, M.F1_MACRO: accuracy - 0.01, M.ACCURACY_DROP: TEACHER_ACCURACY - accuracy,
            M.LATENCY_MS: latency, M.LATENCY_P95_MS: latency * 1.1, M.SPEEDUP: TEACHER_LATENCY_MS / latency,
            M.EMISSIONS_KG: emissions, M.ENERGY_KWH: emissions * 3, M.PARAMS: int(1_000_000 * (0.2 + 0.8 * kept)),
            M.SPEEDUP_SAME_RUNTIME: TEACHER_LATENCY_MS / latency,
            M.SPARSITY: sparsity, M.HEADS_PRUNED: int(12 * sparsity), M.FFN_KEPT: kept,
            M.TRAIN_SECONDS: seconds, M.LATENCY_THREADS: trial.latency.threads or 1,
            M.TEACHER_ACCURACY: TEACHER_ACCURACY, M.TEACHER_LATENCY_MS: TEACHER_LATENCY_MS,
            M.STEP: self.steps, "resumed_from_step": resumed_from,
        }


@dataclass(frozen=True)
class SyntheticRetime:
    """Callable like ``prunetune.trainables.measure.retime.retime``: the quiet latency of a synthetic
    trial's model, ``IN_SEARCH_SLOWDOWN`` times faster than in the search.

    Each call appends the trial id to ``calls_file`` (when given), and the ``fail_at``-th call
    raises instead, as a driver stopped while re-timing would leave it.
    """

    calls_file: str | None = None
    fail_at: int | None = None

    def __call__(self, request) -> dict[str, Any]:
        if self.calls_file is not None:
            with open(self.calls_file, "a") as calls:
                calls.write(f"{request.trial_id}\n")
            if self.fail_at is not None and len(Path(self.calls_file).read_text().split()) == self.fail_at:
                raise RuntimeError(f"re-timing of {request.trial_id} stopped")
        trial = json.loads((Path(request.model_dir) / "synthetic.json").read_text())
        latency = _latency(trial) / IN_SEARCH_SLOWDOWN
        return {M.LATENCY_MS: latency, M.LATENCY_P95_MS: latency * 1.05, M.TEACHER_LATENCY_MS: TEACHER_LATENCY_MS,
                M.SPEEDUP: TEACHER_LATENCY_MS / latency, M.SPEEDUP_SAME_RUNTIME: TEACHER_LATENCY_MS / latency,
                M.LATENCY_SPREAD: 0.01, M.LATENCY_NOISY: False}


#: How much lower a synthetic trial's accuracy is on the held-out test split (the selection's bias).
HELD_OUT_BIAS = 0.01


@dataclass(frozen=True)
class SyntheticHeldOut:
    """Callable like ``prunetune.trainables.measure.held_out.evaluate_held_out``: a synthetic trial's
    accuracy on the test split, ``HELD_OUT_BIAS`` below its validation figure, with a 2-point interval."""

    def __call__(self, request) -> dict[str, Any]:
        from prunetune.config import TrialConfig

        trial = TrialConfig.model_validate(json.loads((Path(request.trial_dir) / MODEL_DIR / "synthetic.json")
                                                      .read_text()))
        accuracy = _accuracy(trial) - HELD_OUT_BIAS
        drop = TEACHER_ACCURACY - accuracy
        return {M.held_out_key(M.ACCURACY): accuracy, M.held_out_key(M.ACCURACY_DROP): drop,
                M.held_out_key(M.TEACHER_ACCURACY): TEACHER_ACCURACY,
                **dict(zip(M.interval_keys(M.held_out_key(M.ACCURACY)), (accuracy - 0.02, accuracy + 0.02))),
                **dict(zip(M.interval_keys(M.held_out_key(M.ACCURACY_DROP)), (drop - 0.02, drop + 0.02)))}


def _busy_energy(energy_meter: Callable, seconds: float) -> dict[str, float]:
    """Keep one CPU busy for ``seconds`` inside the meter; its energy and emissions."""
    with energy_meter() as meter:
        deadline = time.perf_counter() + seconds
        while time.perf_counter() < deadline:
            sum(i * i for i in range(10_000))
    return {M.ENERGY_KWH: meter.energy_kwh, M.EMISSIONS_KG: meter.emissions_kg, M.ENERGY_ESTIMATED: meter.estimated}


def _latency(trial: dict) -> float:
    kept = 1.0 - trial["sparsity"]
    return TEACHER_LATENCY_MS * (0.15 + 0.85 * kept) * (0.6 if trial["inference_precision"] != "fp32" else 1.0)


def _accuracy(trial) -> float:
    """Falls with sparsity, best near T = 2-4 and alpha = 0.9; deterministic in the config."""
    temperature_penalty = 0.01 * math.log(max(trial.temperature, 1e-3) / 3.0) ** 2
    alpha_penalty = 0.02 * (trial.alpha - 0.9) ** 2
    return TEACHER_ACCURACY - 0.35 * trial.sparsity**3 - temperature_penalty - alpha_penalty


def _load_step(output_dir: Path) -> int:
    state = output_dir / CHECKPOINT_DIR / "state.json"
    return int(json.loads(state.read_text())["step"]) if state.is_file() else 0


def _save_step(output_dir: Path, step: int) -> Path:
    directory = output_dir / CHECKPOINT_DIR
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "state.json").write_text(json.dumps({"step": step}))
    return directory
