"""Re-timing a finished trial's model beside the dense teacher, on a quiet node.

The search runs this in a Ray task that takes a whole node (all its CPUs, or a whole GPU),
so nothing else runs there while it times; inside, the timing slot and alternating rounds
apply as they do in a trial. The student is served exactly as the trial served it (its
saved compacted model at its inference precision, in its runtime: the files (an ONNX graph,
an OpenVINO model) the trial measured and saved, with its latency settings and threads, beside the
dense fp32 teacher in PyTorch eager and the dense teacher in the student's runtime and
precision.
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
    runtime: str = "torch"
    token_types: bool = False  # two segments (a pair, a question and its context), for families that have them
    teachers: bool = True  # False: the student alone (a rung's latency), no speed-ups


def retime(request: RetimeRequest) -> dict[str, Any]:
    """The trial's latency figures timed again (keys of the metric contract)."""
    import copy
    import json

    from prunetune.trainables.families.compaction import load_model_dir
    from prunetune.trainables.measure.latency import measure_alternating, uses_token_types
    from prunetune.trainables.measure.latency_table import hardware_of
    from prunetune.trainables.runtimes import is_reference, runtime_of
    from prunetune.trainables.training.precision import resolve_device

    device = resolve_device(request.device)
    runtime = runtime_of(request.runtime)
    # What the trial measured and ships: its runtime's files, or the compacted model itself.
    served = runtime.load(request.model_dir, precision=request.inference_precision, device=device,
                          threads=request.threads)
    models = {"student": served.model}
    token_types = request.token_types
    if request.teachers:  # a rung's latency is the student's alone: no teacher is loaded for it
        teacher = load_model_dir(request.teacher_dir, device=served.device)
        models["teacher"] = teacher
        token_types = token_types or (_task_has_pair(Path(request.model_dir)) and uses_token_types(teacher))
        if not is_reference(request.runtime, request.inference_precision):
            models["teacher_runtime"] = runtime.serve_teacher(
                lambda: copy.deepcopy(teacher).to(device), precision=request.inference_precision, device=device,
                threads=request.threads, cache_dir=Path(request.teacher_dir).parent).model
    vocab_size = json.loads((Path(request.model_dir) / "config.json").read_text())["vocab_size"]
    timed = measure_alternating(models, batch_size=request.batch_size, seq_len=request.seq_len,
                                vocab_size=vocab_size, device=served.device,
                                min_run_time=request.min_run_time, threads=request.threads, rounds=request.rounds,
                                max_spread=request.max_spread, token_types=token_types)
    from prunetune.trainables.runtimes import software_versions

    hardware = {M.LATENCY_HARDWARE: hardware_of(served.device), M.SOFTWARE: software_versions(request.runtime)}
    if not request.teachers:
        return {M.LATENCY_MS: timed["student"].median_ms, M.LATENCY_P95_MS: timed["student"].p95_ms, **hardware}
    return {**latency_figures(timed), **hardware}


def latency_figures(timed: dict[str, Any]) -> dict[str, Any]:
    """The contract's latency figures of a student timed beside the dense fp32 teacher in PyTorch
    eager (``teacher``) and, where that differs, the teacher in its runtime (``teacher_runtime``)."""
    student_latency, teacher_latency = timed["student"], timed["teacher"]
    same_runtime = timed.get("teacher_runtime", teacher_latency)
    return {
        M.LATENCY_MS: student_latency.median_ms, M.LATENCY_P95_MS: student_latency.p95_ms,
        M.TEACHER_LATENCY_MS: teacher_latency.median_ms,
        M.TEACHER_RUNTIME_LATENCY_MS: same_runtime.median_ms,
        M.SPEEDUP: teacher_latency.median_ms / student_latency.median_ms,
        M.SPEEDUP_SAME_RUNTIME: same_runtime.median_ms / student_latency.median_ms,
        M.LATENCY_SPREAD: max(latency.spread for latency in timed.values()),
        M.LATENCY_NOISY: student_latency.noisy,
    }


def _task_has_pair(model_dir: Path) -> bool:
    """Whether the trial's task feeds two segments (its result.json beside the model says which task)."""
    import json

    from prunetune.config import TaskConfig
    from prunetune.names import RESULT_FILE
    from prunetune.trainables.tasks import TASKS

    result = model_dir.parent / RESULT_FILE
    if not result.is_file():
        return False
    task = TaskConfig.model_validate(json.loads(result.read_text()).get("config", {}).get("task", {}))
    return TASKS[task.kind].has_pair(task)
