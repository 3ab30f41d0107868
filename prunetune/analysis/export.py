"""Export a trial's compacted model as a ready-to-serve Hugging Face model directory.

The directory holds ``model.safetensors``, ``config.json`` (with the real label names),
the tokenizer, a model card (``README.md``) and ``prunetune_export.json``. A compacted
model (``model_type: prunetune_<family>``: per-layer head counts and FFN widths) also
ships its modeling code (``modeling_prunetune_<family>.py`` and the two small modules it
imports), referenced by ``auto_map`` in its config, so that::

    pipeline("text-classification", model=DIR, trust_remote_code=True)

loads it where prunetune is not installed, and ``pipeline(model=DIR)`` loads it without
``trust_remote_code`` in a process where prunetune's classes are registered with the Auto
classes (``prunetune.trainables.register_auto_classes()``). With ``onnx=True``,
``model.onnx`` (inputs ``input_ids`` and ``attention_mask``, output ``logits``) is written
too, and checked against PyTorch with onnxruntime. A trial that ran in ONNX Runtime
(``trial.runtime: onnxruntime``) saved the graph it measured, quantised when it served
int8: that graph is shipped as it is, whatever ``onnx`` says, since it is what the
figures are for.

Every export is checked before it is reported: the exported directory, loaded through
``pipeline(..., trust_remote_code=True)`` (the shipped code, as a user without prunetune
gets it), must predict what the trial's own model predicts on sample texts.

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
from prunetune.trainables.measure.runtime_checks import ONNX_FILE, ONNX_TOLERANCE

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
    #: The trial ran in ONNX Runtime: ``model.onnx`` is the graph it measured, shipped as it was.
    measured_runtime: str | None = None
    measured_precision: str | None = None
    onnx_agreement: float | None = None  # of the shipped graph's predictions with PyTorch's, on the sample texts


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
    check = check_export(source, out_dir, tokenizer)
    if (source / ONNX_FILE).is_file():
        check = ship_measured_graph(source / ONNX_FILE, out_dir / ONNX_FILE, model, tokenizer, check,
                                    precision=str(trial.get("trial.inference_precision", "fp32")))
    elif onnx:
        difference = export_onnx(model, tokenizer, out_dir / ONNX_FILE)
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
    """The trial's model (eval mode, CPU) and its tokenizer."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    register_pruned_classes()
    try:
        model = AutoModelForSequenceClassification.from_pretrained(str(model_dir)).eval()
        tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    except (OSError, ValueError, KeyError) as exc:
        raise ModelError(f"{model_dir}: cannot be loaded as a text classifier with its tokenizer: {exc}") from exc
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
    entry = (json.loads(config_path.read_text()).get("auto_map") or {}).get("AutoModelForSequenceClassification")
    return f"{entry.split('.')[0]}.py" if entry else None


# --------------------------------------------------------------------------- checks


def check_export(source: Path, out_dir: Path, tokenizer) -> ExportCheck:
    """The export, loaded through ``pipeline``, must predict what the trial's model predicts."""
    import torch
    from transformers import AutoModelForSequenceClassification, pipeline

    texts = list(SAMPLE_TEXTS)
    reference, _ = load_trial_model(source)
    exported = AutoModelForSequenceClassification.from_pretrained(str(out_dir)).eval()
    batch = tokenizer(texts, padding=True, truncation=True, return_tensors="pt")
    with torch.no_grad():
        expected, actual = reference(**batch).logits, exported(**batch).logits
    difference = float((expected - actual).abs().max())
    classifier = pipeline("text-classification", model=str(out_dir), device="cpu", trust_remote_code=True)
    predicted = [result["label"] for result in classifier(texts, truncation=True)]
    wanted = [reference.config.id2label[int(i)] for i in expected.argmax(dim=-1)]
    if difference > LOGIT_TOLERANCE or predicted != wanted:
        raise ModelError(
            f"{out_dir}: the export does not reproduce trial model {source}: max |logit difference| = "
            f"{difference:.2e} (tolerance {LOGIT_TOLERANCE:.0e}); pipeline predicted {predicted}, expected {wanted}"
        )
    return ExportCheck(len(texts), True, difference)


def export_onnx(model, tokenizer, path: Path) -> float:
    """Write ``model.onnx`` and return its max |logit difference| to PyTorch (checked with onnxruntime).

    The graph is the one a trial measures with ``trial.runtime: onnxruntime``
    (:func:`prunetune.trainables.measure.runtimes.export_onnx`); the check runs on batches of
    real texts of other shapes, padded and not, so the dynamic axes are exercised.
    """
    from prunetune.trainables.measure.runtimes import export_onnx as write_graph

    write_graph(model, path)
    difference = max(_onnx_difference(model, tokenizer, path, texts) for texts in _check_batches())
    if difference > ONNX_TOLERANCE:
        raise ModelError(f"{path}: ONNX logits differ from PyTorch by up to {difference:.2e} "
                         f"(tolerance {ONNX_TOLERANCE:.0e})")
    return difference


def _check_batches() -> list[list[str]]:
    return [list(SAMPLE_TEXTS), [SAMPLE_TEXTS[0]], list(SAMPLE_TEXTS[4:6])]


def _onnx_difference(model, tokenizer, path: Path, texts: list[str]) -> float:
    import numpy as np
    import torch

    from prunetune.trainables.measure.runtimes import OrtModel

    batch = tokenizer(texts, padding=True, return_tensors="pt")
    inputs = {name: batch[name] for name in ("input_ids", "attention_mask")}
    onnx_logits = OrtModel(path, threads=1)(**inputs).logits.numpy()
    with torch.no_grad():
        torch_logits = model(**inputs).logits.numpy()
    return float(np.abs(onnx_logits - torch_logits).max())


def ship_measured_graph(source: Path, target: Path, model, tokenizer, check: ExportCheck, *,
                        precision: str) -> ExportCheck:
    """Copy the ONNX graph the trial measured (byte for byte) and check it against PyTorch.

    An fp32 graph must match PyTorch's logits within ONNX_TOLERANCE; an int8 graph is a
    quantised model, so its agreement with PyTorch's predictions is recorded instead.
    """
    import numpy as np
    import torch

    from prunetune.trainables.measure.runtimes import OrtModel

    shutil.copyfile(source, target)
    batch = tokenizer(list(SAMPLE_TEXTS), padding=True, return_tensors="pt")
    inputs = {name: batch[name] for name in ("input_ids", "attention_mask")}
    graph_logits = OrtModel(target, threads=1)(**inputs).logits.numpy()
    with torch.no_grad():
        torch_logits = model(**inputs).logits.numpy()
    difference = float(np.abs(graph_logits - torch_logits).max())
    agreement = float((graph_logits.argmax(-1) == torch_logits.argmax(-1)).mean())
    if precision == "fp32" and difference > ONNX_TOLERANCE:
        raise ModelError(f"{source}: the trial's ONNX graph differs from its PyTorch model by up to {difference:.2e} "
                         f"(tolerance {ONNX_TOLERANCE:.0e})")
    return replace(check, onnx_max_difference=difference if precision == "fp32" else None,
                   measured_runtime="onnxruntime", measured_precision=precision, onnx_agreement=agreement)


# --------------------------------------------------------------------------- records


def _write_record(out_dir: Path, run: RunData, trial, check: ExportCheck) -> None:
    record = {
        "run_dir": str(run.run_dir.resolve()),
        "trial_id": str(trial[R.TRIAL_ID]),
        "metrics": {k: _plain(trial.get(k)) for k in M.FINAL_METRIC_KEYS if k in trial},
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

    metadata = {k: _plain(trial.get(k)) for k in (*M.FINAL_METRIC_KEYS, *run.config_columns) if k in trial}
    return log_model_artifact(out_dir, trial_id=str(trial[R.TRIAL_ID]), settings=settings, metadata=metadata)


def _plain(value: Any) -> Any:
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and value != value:  # NaN
        return None
    return value
