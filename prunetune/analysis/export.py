"""Export a trial's compacted model as a ready-to-serve Hugging Face model directory.

The directory holds ``model.safetensors``, ``config.json`` (with the real label names),
the tokenizer, a model card (``README.md``) and ``prunetune_export.json``. A compacted
model (``model_type: prunetune_<family>``: per-layer head counts and FFN widths) also
ships its modeling code (``modeling_prunetune_<family>.py`` and the two small modules it
imports), referenced by ``auto_map`` in its config, so that::

    pipeline("text-classification", model=DIR, trust_remote_code=True)   # or the task's own pipeline:
    pipeline("token-classification", ...), pipeline("question-answering", ...)

loads it where prunetune is not installed, and ``pipeline(model=DIR)`` loads it without
``trust_remote_code`` in a process where prunetune's classes are registered with the Auto
classes (``prunetune.trainables.register_auto_classes()``). With ``onnx=True``,
``model.onnx`` (inputs ``input_ids``, ``attention_mask`` and, for families with token types,
``token_type_ids``; the head's outputs, ``logits`` or ``start_logits`` and ``end_logits``) is written
too, and checked against PyTorch with onnxruntime. A trial that ran in a runtime that
serves from files (``trial.runtime: onnxruntime``: ``model.onnx``; ``openvino``:
``openvino_model.xml`` and ``.bin``) saved the files it measured, quantised when it served
int8: they are shipped as they are, since they are what the figures are for, beside the
PyTorch model and again in ``<runtime>/`` with the tokenizer and a config of the family's own
model type: a directory that the runtime's package, transformers' tokenizer and optimum's
``ORTModelFor...`` and ``OVModelFor...`` classes load without remote code.

Every export is checked before it is reported: the exported directory, loaded through
``pipeline(..., trust_remote_code=True)`` (the shipped code, as a user without prunetune
gets it), must compute what the trial's own model computes on sample inputs of the task's
shape (texts, pairs, a question and its context), and its task's ``pipeline`` must give what
the same pipeline over the trial's model gives.

torch and transformers are imported inside the functions: importing
``prunetune.analysis`` must stay light.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from prunetune import metrics as M
from prunetune.analysis import runs as R
from prunetune.analysis.front import FrontAnalysis
from prunetune.analysis.runs import RunData
from prunetune.errors import ConfigError, ModelError
from prunetune.trainables.runtimes import ONNX_FILE, ONNX_TOLERANCE, RUNTIMES, FileRuntime

EXPORT_RECORD = "prunetune_export.json"
CARD_FILE = "README.md"
LOGIT_TOLERANCE = 1e-4
#: Inputs of the equivalence checks: varied lengths, so that padding is exercised.
SAMPLE_TEXTS = (
    "Shares in the bank rose sharply after it reported record profits for the year.",
    "The striker scored twice in the second half to win the cup final.",
    "The government will publish its plans for the health service next week.",
    "A new smartphone with a folding screen goes on sale in the spring.",
    "The film won three awards, including best director, at last night's ceremony.",
    "Oil prices fell.",
    "Voters head to the polls on Thursday in an election that polls say is too close to call, "
    "with both main parties promising lower taxes and more spending on schools and hospitals.",
    "Tennis",
)


@dataclass(frozen=True)
class ExportCheck:
    texts: int
    predictions_match: bool
    max_logit_difference: float
    onnx_max_difference: float | None = None
    #: The trial ran in a runtime that serves from files: they are what it measured, shipped as they were.
    measured_runtime: str | None = None
    measured_precision: str | None = None
    runtime_agreement: float | None = None  # of the shipped files' predictions with PyTorch's, on the sample texts
    runtime_max_difference: float | None = None  # at fp32, where they must compute what PyTorch computes


@dataclass(frozen=True)
class ExportResult:
    trial_id: str
    out_dir: Path
    files: list[Path]
    check: ExportCheck
    wandb: Any = None
    labels: dict[int, str] = field(default_factory=dict)


def export_trial(run: RunData, analysis: FrontAnalysis, trial_id: str, out_dir: str | Path, *,
                 onnx: bool = False, wandb: bool = True, why: list[str] | None = None) -> ExportResult:
    """Write trial ``trial_id``'s model to ``out_dir`` (see module docs) and check it."""
    trial = _finished_trial(run, trial_id)
    source = run.model_dir(trial_id)
    out_dir = _prepare(Path(out_dir))
    model, tokenizer = load_trial_model(source)
    save_model_dir(model, tokenizer, out_dir)
    samples = TaskSamples.of(run.config.get("task") or {})
    check = check_export(source, out_dir, tokenizer, samples=samples)
    measured = _measured_runtime(trial, source)
    if measured is not None:
        check = ship_measured_files(measured, source, out_dir, model, tokenizer, check,
                                    precision=str(trial.get("trial.inference_precision", "fp32")), samples=samples)
    if onnx and not (out_dir / ONNX_FILE).is_file():
        difference = export_onnx(model, tokenizer, out_dir / ONNX_FILE, samples=samples)
        check = replace(check, onnx_max_difference=difference)
    labels = {int(k): str(v) for k, v in model.config.id2label.items()}
    from prunetune.analysis._model_card import model_card

    (out_dir / CARD_FILE).write_text(model_card(run, analysis, trial, out_dir, check=check, labels=labels, why=why))
    _write_record(out_dir, run, trial, check)
    record = _log_artifact(run, trial, out_dir, enabled=wandb)
    files = sorted(p for p in out_dir.iterdir() if p.is_file())
    return ExportResult(str(trial_id), out_dir, files, check, record, labels)


def _finished_trial(run: RunData, trial_id: str):
    trial = run.trial(trial_id)
    if trial[R.STATUS] == R.STOPPED:
        raise ConfigError(f"--trial {trial_id!r}: the scheduler stopped this trial early, at step "
                          f"{trial.get(M.STOPPED_AT_STEP)}, so it has no model; finished trials: "
                          f"{', '.join(run.finished[R.TRIAL_ID])}")
    if trial[R.STATUS] != R.TERMINATED:
        raise ConfigError(f"--trial {trial_id!r}: the trial ended {trial[R.STATUS]} ({trial.get(R.ERROR)}); "
                          f"finished trials: {', '.join(run.finished[R.TRIAL_ID])}")
    return trial


def _prepare(out_dir: Path) -> Path:
    """An empty ``out_dir``; a previous prunetune export there is replaced, anything else is refused."""
    if out_dir.exists() and not out_dir.is_dir():
        raise ConfigError(f"--out {str(out_dir)!r}: is a file; choose an empty or new directory")
    if out_dir.exists() and any(out_dir.iterdir()):
        if not (out_dir / EXPORT_RECORD).is_file():
            raise ConfigError(f"--out {str(out_dir)!r}: exists and is not a prunetune export; "
                              "choose an empty or new directory")
        shutil.rmtree(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    return out_dir


# --------------------------------------------------------------------------- model directory


def register_pruned_classes() -> None:
    """Make AutoConfig / AutoModelForSequenceClassification / pipeline know every ``prunetune_<family>``."""
    from prunetune.trainables.families.compaction import register_auto_classes

    register_auto_classes()


def load_trial_model(model_dir: Path):
    """The trial's model (eval mode, CPU), with its task's head, and its tokenizer."""
    from transformers import AutoTokenizer

    from prunetune.trainables.families.compaction import load_model_dir

    try:
        model = load_model_dir(model_dir)
        tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    except (OSError, ValueError, KeyError) as exc:
        raise ModelError(f"{model_dir}: cannot be loaded as a model with its tokenizer: {exc}") from exc
    return model, tokenizer


def save_model_dir(model, tokenizer, out_dir: Path) -> None:
    """safetensors + config + tokenizer; a compacted model also gets its modeling code and auto_map."""
    from prunetune.trainables.families.compaction import save_compacted

    save_compacted(model, out_dir, tokenizer=tokenizer)


def shipped_modeling_file(model_dir: Path) -> str | None:
    """The modeling file a model directory ships as remote code (from its ``auto_map``), if any."""
    config_path = Path(model_dir) / "config.json"
    if not config_path.is_file():
        return None
    entry = (json.loads(config_path.read_text()).get("auto_map") or {}).get("AutoConfig")
    return f"{entry.split('.')[0]}.py" if entry else None


# --------------------------------------------------------------------------- checks


@dataclass(frozen=True)
class TaskSamples:
    """Sample inputs of a task's shape, for the checks: what the tokenizer and the pipeline take."""

    kind: str
    pair: bool

    @classmethod
    def of(cls, task: dict[str, Any]) -> "TaskSamples":
        from prunetune.config import TaskConfig
        from prunetune.trainables.tasks import TASKS

        config = TaskConfig.model_validate(task)
        return cls(kind=config.kind, pair=TASKS[config.kind].has_pair(config))

    @property
    def task(self):
        from prunetune.trainables.tasks import TASKS

        return TASKS[self.kind]

    def tokenized(self, tokenizer, texts: list[str]):
        """A padded batch of ``texts`` (paired with the next text, or as contexts of a question)."""
        if self.kind == "question_answering":
            return tokenizer([_QUESTION] * len(texts), texts, padding=True, truncation="only_second",
                             return_tensors="pt")
        pairs = texts[1:] + texts[:1] if self.pair else None
        return tokenizer(texts, pairs, padding=True, truncation=True, return_tensors="pt")

    def pipeline_inputs(self, texts: list[str]) -> list[Any]:
        if self.kind == "question_answering":
            return [{"question": _QUESTION, "context": text} for text in texts]
        if self.pair:
            return [{"text": a, "text_pair": b} for a, b in zip(texts, texts[1:] + texts[:1])]
        return list(texts)


#: The question of the question-answering checks (its contexts are the sample texts).
_QUESTION = "What happened?"


def check_export(source: Path, out_dir: Path, tokenizer, *, samples: TaskSamples | None = None) -> ExportCheck:
    """The export must compute what the trial's model computes, and its task's ``pipeline`` (with the
    shipped code) must give what the same pipeline over the trial's model gives."""
    import torch
    from transformers import pipeline

    from prunetune.trainables.families.compaction import head_outputs, load_model_dir

    samples = samples or TaskSamples("classification", False)
    texts = list(SAMPLE_TEXTS)
    reference, _ = load_trial_model(source)
    exported = load_model_dir(out_dir)
    batch = samples.tokenized(tokenizer, texts)
    with torch.no_grad():
        expected, actual = head_outputs(reference(**batch)), head_outputs(exported(**batch))
    difference = float((expected - actual).abs().max())
    task, options = samples.task.pipeline_task, samples.task.pipeline_kwargs()
    served = pipeline(task, model=str(out_dir), device="cpu", trust_remote_code=True, **options)
    own = _own_pipeline(task, reference, tokenizer, options)
    inputs = samples.pipeline_inputs(texts)
    predicted, wanted = _rounded(_run_pipeline(served, inputs)), _rounded(_run_pipeline(own, inputs))
    if difference > LOGIT_TOLERANCE or predicted != wanted:
        raise ModelError(
            f"{out_dir}: the export does not reproduce trial model {source}: max |output difference| = "
            f"{difference:.2e} (tolerance {LOGIT_TOLERANCE:.0e}); {task} pipeline gave {predicted}, expected {wanted}"
        )
    return ExportCheck(len(texts), True, difference)


def _own_pipeline(task: str, model, tokenizer, options: dict[str, Any]):
    """The same pipeline over the trial's own model (QA: the one its export ships)."""
    from transformers import pipeline

    from prunetune.trainables.families.compaction import QA_PIPELINE_TASK

    if task == QA_PIPELINE_TASK:
        from prunetune.trainables.families._qa_pipeline import ExtractiveQuestionAnsweringPipeline

        return ExtractiveQuestionAnsweringPipeline(model=model, tokenizer=tokenizer, device="cpu", **options)
    return pipeline(task, model=model, tokenizer=tokenizer, device="cpu", **options)


def _run_pipeline(served, inputs: list[Any]) -> list[Any]:
    # The classification pipeline truncates only when told; the other pipelines window or truncate by themselves.
    options = {"truncation": True} if getattr(served, "task", "") == "text-classification" else {}
    return [served(item, **options) for item in inputs]


def _rounded(value: Any) -> Any:
    """Pipeline outputs with scores rounded (the two models' floats differ in the last bits)."""
    if isinstance(value, dict):
        return {key: _rounded(v) for key, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_rounded(v) for v in value]
    if isinstance(value, float) or type(value).__name__.startswith("float"):
        return round(float(value), 3)
    return value


def export_onnx(model, tokenizer, path: Path, *, samples: TaskSamples | None = None) -> float:
    """Write ``model.onnx`` and return its max |output difference| to PyTorch (checked with onnxruntime).

    The graph is the one a trial measures with ``trial.runtime: onnxruntime``
    (:func:`prunetune.trainables.runtimes._graph.export_onnx`); the check runs on batches of
    real inputs of other shapes, padded and not, so the dynamic axes are exercised.
    """
    from prunetune.trainables.runtimes._graph import export_onnx as write_graph

    samples = samples or TaskSamples("classification", False)
    write_graph(model, path)
    difference = max(_onnx_difference(model, tokenizer, path, texts, samples) for texts in _check_batches())
    if difference > ONNX_TOLERANCE:
        raise ModelError(f"{path}: ONNX outputs differ from PyTorch by up to {difference:.2e} "
                         f"(tolerance {ONNX_TOLERANCE:.0e})")
    return difference


def _check_batches() -> list[list[str]]:
    return [list(SAMPLE_TEXTS), [SAMPLE_TEXTS[0]], list(SAMPLE_TEXTS[4:6])]


def _both_outputs(model, tokenizer, served, texts: list[str], samples: TaskSamples):
    """(served outputs, PyTorch outputs) on the same batch, by output name."""
    import torch

    batch = samples.tokenized(tokenizer, texts)
    inputs = {name: batch[name] for name in served.input_names if name in batch}
    served_outputs = served(**inputs)
    with torch.no_grad():
        torch_outputs = model(**inputs)
    return ({name: served_outputs[name] for name in served.output_names},
            {name: torch_outputs[name] for name in served.output_names})


def _onnx_difference(model, tokenizer, path: Path, texts: list[str], samples: TaskSamples) -> float:
    from prunetune.trainables.runtimes.onnx_runtime import OrtModel

    graph, torch_outputs = _both_outputs(model, tokenizer, OrtModel(path, threads=1), texts, samples)
    return max(float((graph[name] - torch_outputs[name]).abs().max()) for name in graph)


def _measured_runtime(trial, source: Path):
    """The runtime whose files the trial saved beside its model (None: PyTorch, nothing to ship)."""
    runtime = RUNTIMES.get(str(trial.get("trial.runtime", "")))
    if isinstance(runtime, FileRuntime) and runtime.is_saved_in(source):
        return runtime
    return None


def ship_measured_files(runtime, source: Path, out_dir: Path, model, tokenizer, check: ExportCheck, *,
                        precision: str, samples: TaskSamples | None = None) -> ExportCheck:
    """Copy the files the trial measured in ``runtime`` (byte for byte) and check them against PyTorch.

    At fp32 they must match PyTorch's outputs within ONNX_TOLERANCE; an int8 model is
    quantised, so its agreement with PyTorch's predictions (the argmax of each output: the
    class, each token's tag, the start and the end) is recorded instead.
    """
    import torch

    samples = samples or TaskSamples("classification", False)
    for name in runtime.shipped_files:
        shutil.copyfile(source / name, out_dir / name)
    runtime.write_serving_dir(out_dir, out_dir / runtime.name)  # its own directory: no remote code
    served = runtime.load(out_dir / runtime.name, precision=precision, device=torch.device("cpu"), threads=1)
    outputs, torch_outputs = _both_outputs(model, tokenizer, served.model, list(SAMPLE_TEXTS), samples)
    difference = max(float((outputs[name] - torch_outputs[name]).abs().max()) for name in outputs)
    agreements = [float((outputs[n].argmax(-1) == torch_outputs[n].argmax(-1)).float().mean()) for n in outputs]
    if precision == "fp32" and difference > ONNX_TOLERANCE:
        raise ModelError(f"{source}: the trial's {runtime.label} model differs from its PyTorch model by up to "
                         f"{difference:.2e} (tolerance {ONNX_TOLERANCE:.0e})")
    return replace(check, runtime_max_difference=difference if precision == "fp32" else None,
                   measured_runtime=runtime.name, measured_precision=precision,
                   runtime_agreement=sum(agreements) / len(agreements))


# --------------------------------------------------------------------------- records


def _write_record(out_dir: Path, run: RunData, trial, check: ExportCheck) -> None:
    record = {
        "run": run.name,  # named by its directory: no path of the machine that ran it
        "trial_id": str(trial[R.TRIAL_ID]),
        "metrics": {k: _plain(trial.get(k)) for k in (*M.ALL_METRIC_KEYS, *M.UNCERTAINTY_METRICS, *M.TEXT_METRICS)
                    if k in trial},
        "config": {c: _plain(trial[c]) for c in run.config_columns},
        "check": asdict(check),
    }
    (out_dir / EXPORT_RECORD).write_text(json.dumps(record, indent=2) + "\n")


def _log_artifact(run: RunData, trial, out_dir: Path, *, enabled: bool):
    from prunetune.analysis.wandb_settings import wandb_settings

    settings = wandb_settings(run.config, run.run_dir, enabled=enabled)
    if not settings.enabled:
        return None
    from prunetune.analysis.wandb_log import log_model_artifact

    metadata = {k: _plain(trial.get(k)) for k in (*M.ALL_METRIC_KEYS, *run.config_columns) if k in trial}
    return log_model_artifact(out_dir, trial_id=str(trial[R.TRIAL_ID]), settings=settings, metadata=metadata)


def _plain(value: Any) -> Any:
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and value != value:  # NaN
        return None
    return value
