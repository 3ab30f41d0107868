"""Re-timing a finished trial's model beside the dense teacher, on a quiet node.

The search runs this in a Ray task that takes a whole node (all its CPUs, or a whole GPU),
so nothing else runs there while it times; inside, the timing slot and alternating rounds
apply as they do in a trial. The student is served exactly as the trial served it (its
saved compacted model at its inference precision), with the trial's latency settings and
thread count.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prunetune import metrics as M


@dataclass(frozen=True)
class RetimeRequest:
    """What a trial measured, and with what, so that it can be measured again the same way."""

    trial_id: str
    model_dir: str
    teacher_dir: str
    inference_precision: str
    device: str
    batch_size: int
    seq_len: int
    threads: int
    min_run_time: float
    rounds: int
    max_spread: float


def retime(request: RetimeRequest) -> dict[str, Any]:
    """The trial's latency figures timed again (keys of the metric contract)."""
    import torch
    from transformers import AutoModelForSequenceClassification

    from prunetune.trainables.families.compaction import load_compacted
    from prunetune.trainables.measure.latency import measure_alternating
    from prunetune.trainables.training.precision import (
        resolve_device,
        to_inference_precision,
    )

    device = resolve_device(request.device)
    serving_device = torch.device("cpu") if request.inference_precision == "int8" else device
    student = to_inference_precision(load_compacted(Path(request.model_dir)), request.inference_precision, device)
    teacher = AutoModelForSequenceClassification.from_pretrained(request.teacher_dir).to(serving_device).eval()
    timed = measure_alternating({"student": student, "teacher": teacher}, batch_size=request.batch_size,
                                seq_len=request.seq_len, vocab_size=teacher.config.vocab_size, device=serving_device,
                                min_run_time=request.min_run_time, threads=request.threads, rounds=request.rounds,
                                max_spread=request.max_spread)
    student_latency, teacher_latency = timed["student"], timed["teacher"]
    return {
        M.LATENCY_MS: student_latency.median_ms, M.LATENCY_P95_MS: student_latency.p95_ms,
        M.TEACHER_LATENCY_MS: teacher_latency.median_ms,
        M.SPEEDUP: teacher_latency.median_ms / student_latency.median_ms,
        M.LATENCY_SPREAD: max(student_latency.spread, teacher_latency.spread),
        M.LATENCY_NOISY: student_latency.noisy,
    }
