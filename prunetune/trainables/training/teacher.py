"""The teacher: fine-tuned once per (model, data, settings), cached on disk, shared by every trial.

The teacher is the family's model with the task kind's head (``AutoModelFor...``), fine-tuned
on the kind's own loss. Besides the fine-tuned model, the cache holds the teacher's outputs on
the training split (class logits, a score, per-token logits, start and end logits)
(computed once, so that no trial runs the teacher at every step: the one-shot
pseudo-label idea of TT-MPD) and its baseline metrics (accuracy, dense latency, and the
emissions of the fine-tuning, counted once for the whole search).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from filelock import FileLock

from prunetune import metrics as M
from prunetune.builtins import BUILTIN_MODELS, resolve_model
from prunetune.config import Config
from prunetune.errors import ModelError
from prunetune.trainables.measure.energy import EmissionsMeter
from prunetune.trainables.measure.latency import measure_latency, uses_token_types
from prunetune.intervals import ExampleScores, load_example_scores, save_example_scores
from prunetune.trainables.measure.quality import evaluate_task_examples, predict_outputs
from prunetune.trainables.measure.size import count_params
from prunetune.trainables.tasks import TASKS
from prunetune.trainables.training.batches import BatchPlan, take
from prunetune.trainables.training.data import TaskData, load_task_data
from prunetune.trainables.training.optimisation import optimiser_step
from prunetune.trainables.training.precision import grad_scaler, resolve_device

BASELINE_FILE = "baseline.json"

# transformers draws a progress bar for every small save and load; trials do many of them.
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
LOGITS_FILE = "train_logits.pt"


@dataclass(frozen=True)
class TeacherArtifacts:
    model_dir: Path
    key: str
    baseline: dict

    @property
    def root(self) -> Path:
        return self.model_dir.parent

    def train_logits(self) -> torch.Tensor:
        return torch.load(self.root / LOGITS_FILE, weights_only=True)


def cache_root(config: Config) -> Path:
    if config.teacher.cache_dir:
        return Path(config.teacher.cache_dir)
    return Path(os.environ.get("PRUNETUNE_CACHE", Path.home() / ".cache" / "prunetune")) / "teachers"


def teacher_key(config: Config, data: TaskData) -> str:
    """Everything that changes the fine-tuned teacher, and nothing else."""
    teacher = config.teacher.model_dump(exclude={"cache_dir"})
    identity = {
        "model": _model_identity(config.teacher.model),
        "teacher": teacher,
        "data": data.fingerprint,
        "max_length": config.task.max_length,
        "seed": config.task.seed,
    }
    if data.kind != "classification":  # a classification teacher keeps the key it always had
        identity["task"] = config.task.model_dump(include={"kind", "doc_stride"})
    digest = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()
    return digest[:16]


def _model_identity(model: str) -> str:
    path = Path(resolve_model(model))
    config_file = path / "config.json"
    if model in BUILTIN_MODELS or config_file.is_file():
        weights = sorted(path.glob("*.safetensors")) + sorted(path.glob("*.bin"))
        sizes = [f"{w.name}:{w.stat().st_size}" for w in weights]
        return f"{model}|{config_file.read_text() if config_file.is_file() else ''}|{sizes}"
    return model


def load_pretrained(model: str, data: TaskData):
    """Tokenizer and the model with the task's head (``AutoModelFor...`` of its kind) from a built-in
    name, local directory or hub id."""
    import transformers
    from transformers import AutoTokenizer
    from transformers.utils import logging as hf_logging

    from prunetune.trainables.families.compaction import register_auto_classes

    register_auto_classes()  # the heads a family supplies (EuroBERT's question answering) load by Auto class
    source = resolve_model(model)
    kind = TASKS[data.kind]
    hf_logging.disable_progress_bar()
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # the new task head is expected to be untrained
    try:
        tokenizer = AutoTokenizer.from_pretrained(source)
        classifier = getattr(transformers, kind.auto_class).from_pretrained(source, **kind.model_kwargs(data.label_names))
    except OSError as exc:
        raise ModelError(f"teacher.model = {model!r}: cannot load it ({exc})") from exc
    finally:
        hf_logging.set_verbosity(verbosity)
    if not uses_token_types(classifier) and "token_type_ids" in tokenizer.model_input_names:
        # A family with one token type (GTE) under a BERT-style tokenizer: the second segment's
        # type 1 would index past its type embeddings. Set in the init arguments too, the names
        # are saved with the tokenizer, so the student, the exports and their pipelines leave
        # token types out as well.
        names = [name for name in tokenizer.model_input_names if name != "token_type_ids"]
        tokenizer.model_input_names = tokenizer.init_kwargs["model_input_names"] = names
    return tokenizer, classifier


def prepare_teacher(config: Config, *, data: TaskData | None = None, progress: bool = False) -> TeacherArtifacts:
    """The fine-tuned teacher for ``config``: from the cache, or fine-tuned now and cached."""
    data = data or load_task_data(config.task)
    key = teacher_key(config, data)
    root = cache_root(config) / key
    root.mkdir(parents=True, exist_ok=True)
    # Concurrent trials (or nodes on a shared file system) wait for one fine-tuning.
    with FileLock(str(root / ".lock")):
        if not (root / BASELINE_FILE).is_file():
            _fine_tune_into(root, config, data, progress=progress)
    baseline = json.loads((root / BASELINE_FILE).read_text())
    artifacts = TeacherArtifacts(model_dir=root / "model", key=key, baseline=baseline)
    # Every trial's interval pairs its examples with the teacher's on the split it is ranked on.
    teacher_example_scores(artifacts, config, data, config.task.eval_split)
    return artifacts


def teacher_example_scores(artifacts: TeacherArtifacts, config: Config, data: TaskData, split: str) -> ExampleScores:
    """The dense teacher's per-example statistics of the headline metric on ``split``: computed once
    per teacher cache (in PyTorch eager fp32, as its baseline), then read."""
    path = artifacts.root / M.EXAMPLE_SCORES_FILE
    scores = load_example_scores(path, split)
    if scores is not None:
        return scores
    with FileLock(str(artifacts.root / ".lock")):
        scores = load_example_scores(path, split)
        if scores is None:
            scores = _score_teacher(artifacts, config, data, split)
            save_example_scores(path, split, scores)
    return scores


def _score_teacher(artifacts: TeacherArtifacts, config: Config, data: TaskData, split: str) -> ExampleScores:
    device = resolve_device(config.trial.device)
    kind = TASKS[data.kind]
    tokenizer, model = load_pretrained(str(artifacts.model_dir), data)
    model.to(device).eval()
    rows = data.split(split)
    encoded = kind.encode(tokenizer, rows, max_length=config.task.max_length, task=config.task)
    _, scores = evaluate_task_examples(model, encoded, rows, kind=kind, label_names=data.label_names,
                                       task=config.task, device=device)
    return scores


def _fine_tune_into(root: Path, config: Config, data: TaskData, *, progress: bool) -> None:
    device = resolve_device(config.trial.device)
    torch.manual_seed(config.task.seed)
    kind = TASKS[data.kind]
    tokenizer, model = load_pretrained(config.teacher.model, data)
    model.to(device)
    train = kind.encode(tokenizer, data.train, max_length=config.task.max_length, task=config.task)
    eval_split = data.split(config.task.eval_split)
    evaluation = kind.encode(tokenizer, eval_split, max_length=config.task.max_length, task=config.task)
    country = config.trial.emissions
    with EmissionsMeter(country_iso_code=country.country_iso_code, measure_power_secs=country.measure_power_secs) as meter:
        started = time.perf_counter()
        _fine_tune(model, train.inputs, train.targets, config, device, kind=kind, progress=progress)
        train_seconds = time.perf_counter() - started
        logits = predict_outputs(model, train.inputs, head_output=kind.head_output, device=device)
        # The same pass gives the per-example scores every trial's interval pairs with.
        quality, examples = evaluate_task_examples(model, evaluation, eval_split, kind=kind,
                                                   label_names=data.label_names, task=config.task, device=device)
    latency = measure_latency(model, batch_size=config.trial.latency.batch_size, seq_len=config.trial.latency.seq_len,
                              vocab_size=model.config.vocab_size, device=device,
                              min_run_time=config.trial.latency.min_run_time, threads=config.trial.latency.threads,
                              token_types=kind.has_pair(config.task) and uses_token_types(model))
    model.save_pretrained(root / "model")
    tokenizer.save_pretrained(root / "model")
    torch.save(logits, root / LOGITS_FILE)
    save_example_scores(root / M.EXAMPLE_SCORES_FILE, config.task.eval_split, examples)
    baseline = {
        **quality,
        M.LATENCY_MS: latency.median_ms, M.LATENCY_P95_MS: latency.p95_ms,
        M.PARAMS: count_params(model), M.EMISSIONS_KG: meter.emissions_kg, M.ENERGY_KWH: meter.energy_kwh,
        M.TRAIN_SECONDS: train_seconds, "label_names": list(data.label_names), "device": str(device),
        "task_kind": data.kind,
    }
    (root / BASELINE_FILE).write_text(json.dumps(baseline, indent=2))
    logging.getLogger(__name__).info("teacher fine-tuned: %s", baseline)


def _fine_tune(model, train: dict[str, torch.Tensor], labels: torch.Tensor, config: Config,
               device: torch.device, *, kind, progress: bool) -> None:
    from tqdm.auto import tqdm
    from transformers import get_linear_schedule_with_warmup

    settings = config.teacher
    plan = BatchPlan(num_examples=len(labels), batch_size=settings.batch_size, seed=config.task.seed)
    total = int(settings.epochs * plan.steps_per_epoch)
    if settings.max_steps is not None:
        total = min(total, settings.max_steps)
    total = max(total, 1)
    optimizer = torch.optim.AdamW(model.parameters(), lr=settings.learning_rate, weight_decay=0.01)
    schedule = get_linear_schedule_with_warmup(optimizer, num_warmup_steps=total // 10, num_training_steps=total)
    scaler = grad_scaler("fp32", device)  # the teacher fine-tunes in fp32: a scaler that does nothing
    model.train()
    for step in tqdm(range(total), desc="fine-tuning teacher", disable=not progress, unit="step"):
        indices = plan.indices(step)
        targets = kind.loss_kwargs(labels[indices].to(device))
        loss = model(**take(train, indices, device), **targets).loss
        optimiser_step(loss, model, optimizer, scaler, schedule=schedule,
                       describe=lambda: f"step {step} of the teacher's fine-tuning; the key most likely behind "
                                        f"it: teacher.learning_rate = {settings.learning_rate!r} (lower it)")
    model.eval()
