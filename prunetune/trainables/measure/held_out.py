"""A finished trial's model on the held-out test split, beside the teacher's, with 95% intervals.

A search ranks and selects trials on the evaluation split, so the best of many trials looks
better there than it is. The test split takes no part in the search: each front candidate is
evaluated on it once, served exactly as the trial served it (its runtime's saved files at its
inference precision), and paired example by example with the dense teacher (whose test
scores are computed once per teacher cache). The search runs this in a Ray task after it
ends; ``prunetune report RUN_DIR --evaluate-test`` runs it on an existing run.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prunetune import metrics as M


@dataclass(frozen=True)
class HeldOutRequest:
    """Where a trial's files are (found relative to the run directory, never by a recorded path)."""

    trial_id: str
    trial_dir: str  # holds result.json and model/
    teacher_dir: str  # the run's fine-tuned teacher (its cache entry's model/)
    device: str = "cpu"
    split: str = M.HELD_OUT_SPLIT


def evaluate_held_out(request: HeldOutRequest) -> dict[str, Any]:
    """The trial's headline metric and drop on ``request.split``, their intervals, and the teacher's
    figure (the columns of :func:`prunetune.metrics.held_out_keys`)."""
    from prunetune.intervals import save_example_scores
    from prunetune.trainables.measure.quality import evaluate_task_examples
    from prunetune.trainables.tasks import TASKS
    from prunetune.trainables.training.data import load_task_data
    from prunetune.trainables.training.teacher import teacher_example_scores

    trial_dir = Path(request.trial_dir)
    config = trial_config(trial_dir)
    data = load_task_data(config.task)
    kind = TASKS[data.kind]
    served, tokenizer = _served_model(trial_dir / "model", config, request.device)
    rows = data.split(request.split)
    encoded = kind.encode(tokenizer, rows, max_length=config.task.max_length, task=config.task)
    quality, examples = evaluate_task_examples(served.model, encoded, rows, kind=kind, label_names=data.label_names,
                                               task=config.task, device=served.device)
    save_example_scores(trial_dir / M.EXAMPLE_SCORES_FILE, request.split, examples)
    teacher = teacher_example_scores(_teacher_artifacts(request.teacher_dir), config, data, request.split)
    return held_out_figures(quality[kind.headline], examples, teacher, metric=kind.headline, seed=config.task.seed)


def held_out_figures(value: float, student, teacher, *, metric: str, seed: int) -> dict[str, Any]:
    """The held-out columns from the student's figure and both models' per-example scores."""
    from prunetune.intervals import interval_columns, paired_intervals

    teacher_value = teacher.metric()
    found = paired_intervals(student, teacher, metric=metric, seed=seed)
    return {
        M.held_out_key(metric): float(value),
        M.held_out_key(M.drop_key(metric)): M.quality_drop(metric, teacher_value, float(value)),
        M.held_out_key(M.teacher_key(metric)): teacher_value,
        **interval_columns(found, suffix=M.TEST_SUFFIX),
    }


def trial_config(trial_dir: Path):
    """The validated configuration a trial ran with (its result.json)."""
    from prunetune.config import validate
    from prunetune.names import RESULT_FILE

    return validate(json.loads((trial_dir / RESULT_FILE).read_text())["config"])


def _served_model(model_dir: Path, config, device: str):
    from transformers import AutoTokenizer

    from prunetune.trainables.families.compaction import register_auto_classes
    from prunetune.trainables.runtimes import runtime_of
    from prunetune.trainables.training.precision import resolve_device

    register_auto_classes()
    settings = config.trial
    served = runtime_of(settings.runtime).load(model_dir, precision=settings.inference_precision,
                                                device=resolve_device(device), threads=settings.latency.threads)
    return served, AutoTokenizer.from_pretrained(str(model_dir))


def _teacher_artifacts(teacher_dir: str):
    from prunetune.trainables.training.teacher import BASELINE_FILE, TeacherArtifacts

    model_dir = Path(teacher_dir)
    baseline = json.loads((model_dir.parent / BASELINE_FILE).read_text())
    return TeacherArtifacts(model_dir=model_dir, key=model_dir.parent.name, baseline=baseline)
