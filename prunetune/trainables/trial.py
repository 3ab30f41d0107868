"""One compression trial: prune a copy of the teacher while it distils, compact it, measure it.

``run_trial`` runs in-process (no Ray); the Ray Tune trainable wraps it. Every
``trial.eval_every`` steps it reports intermediate metrics and a checkpoint through one
reporting function; the final report carries every key of the metric contract.
"""

from __future__ import annotations

import copy
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

import torch
from safetensors.torch import load_file, save_file

from prunetune import metrics as M
from prunetune.builtins import read_model_dims
from prunetune.config import Config
from prunetune.errors import ConfigError, TrialError
from prunetune.trainables import filling, group_lasso, test_time
from prunetune.trainables.batches import BatchPlan, encode, take
from prunetune.trainables.compaction import compact_and_verify, save_compacted
from prunetune.trainables.data import TaskData, load_task_data
from prunetune.trainables.distill import distillation_loss
from prunetune.trainables.measure import EmissionsMeter, count_params, evaluate, measure_latency
from prunetune.trainables.precision import (
    autocast_context,
    check_inference_precision,
    check_training_precision,
    grad_scaler,
    prepare_for_inference_precision,
    resolve_device,
    to_inference_precision,
)
from prunetune.trainables.pruning import BlockPruner, count_prunable_weights, cubic_sparsity, weight_sparsity
from prunetune.trainables.pruned_bert import PrunedBertConfig, PrunedBertForSequenceClassification
from prunetune.trainables.teacher import TeacherArtifacts, load_pretrained, prepare_teacher
from prunetune.trainables.training_set import DistillationSet, labelled_set

#: ``report(metrics, checkpoint_dir)``: Ray Tune's report inside Tune, any callable otherwise.
Reporter = Callable[[dict[str, Any], Path | None], None]

CHECKPOINT_DIR = "checkpoint"
MODEL_DIR = "model"
RESULT_FILE = "result.json"


def run_trial(config: Config, *, output_dir: str | Path, report: Reporter | None = None,
              progress: bool = False) -> dict[str, Any]:
    """Run (or resume) one trial and return its final metrics; see the module docstring."""
    device = resolve_device(config.trial.device)
    # Precision problems surface before any data or model is loaded.
    check_training_precision(config.trial.precision, device)
    check_inference_precision(config.trial.inference_precision, device)
    check_method_options(config)
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    data = load_task_data(config.task)
    teacher = prepare_teacher(config, data=data, progress=progress)
    trial = _Trial(config, teacher, data, device, output_dir)
    trial.load_checkpoint()
    metrics = trial.train_and_measure(report or _no_report, progress=progress)
    (output_dir / RESULT_FILE).write_text(json.dumps({"metrics": metrics, "config": config.to_dict()}, indent=2))
    return metrics


def _no_report(metrics: dict[str, Any], checkpoint_dir: Path | None) -> None:
    """Outside Tune, intermediate reports have nowhere to go."""


def check_method_options(config: Config) -> None:
    """Options of the chosen method that depend on the model, checked from its config.json only."""
    settings, problems = config.trial, []
    if settings.method == "group_lasso":
        problems += group_lasso.group_shape_problems(
            block_rows=settings.block_rows or settings.block_size, block_cols=settings.block_cols or settings.block_size,
            dims=read_model_dims(config.teacher.model))
    if settings.method == "test_time":
        problems += test_time.ffn_group_problems(ffn_group_size=settings.ffn_group_size, dims=read_model_dims(config.teacher.model))
    if problems:
        raise ConfigError(problems)


@dataclass
class _Progress:
    """What a checkpoint must carry besides tensors, so a resumed trial reports true totals."""

    step: int = 0
    train_seconds: float = 0.0
    emissions_kg: float = 0.0
    energy_kwh: float = 0.0
    last_loss: float = float("nan")


class _Trial:
    def __init__(self, config: Config, teacher: TeacherArtifacts, data: TaskData, device: torch.device, output_dir: Path):
        self.config, self.settings = config, config.trial
        self.teacher, self.data, self.device, self.output_dir = teacher, data, device, output_dir
        torch.manual_seed(self.settings.seed)
        self.tokenizer, self.student = load_pretrained(str(teacher.model_dir), data)
        self.student.to(device)
        self.dense_weights = count_prunable_weights(self.student)
        max_length = config.task.max_length
        if self.settings.method == "test_time":  # never reads the training labels
            self.train_set, self.pruner = self._test_time_setup()
        else:
            self.train_set = labelled_set(self.tokenizer, data.train.texts, data.train.labels, teacher.train_logits(),
                                          max_length=max_length)
            self.pruner = self._mask_pruner()
        self.optimizer = self._optimizer()
        self.scaler = grad_scaler(self.settings.precision, device)
        self.autocast = autocast_context(self.settings.precision, device)
        self.eval_split = data.split(config.task.eval_split)
        self.eval_inputs = encode(self.tokenizer, self.eval_split.texts, max_length)
        self.plan = BatchPlan(len(self.train_set), self.settings.batch_size, self.settings.seed)
        self.progress = _Progress()

    def _mask_pruner(self) -> BlockPruner | group_lasso.GroupLassoPruner:
        s = self.settings
        if s.method == "group_lasso":
            return group_lasso.GroupLassoPruner(
                self.student, block_rows=s.block_rows or s.block_size, block_cols=s.block_cols or s.block_size,
                penalty=s.group_lasso_penalty, reweight_every=s.reweight_every, min_head_density=s.min_head_density,
                max_steps=s.max_steps, warmup_fraction=s.warmup_fraction, cooldown_fraction=s.cooldown_fraction)
        return BlockPruner(self.student, method=s.method, block_size=s.block_size, min_head_density=s.min_head_density)

    def _test_time_setup(self) -> tuple[DistillationSet, test_time.TestTimePruner]:
        # Training texts only (their labels stay unread); the teacher's logits on them were cached.
        return test_time.prepare_trial(
            self.settings, texts=self.data.train.texts, teacher_logits=self.teacher.train_logits(),
            tokenizer=self.tokenizer, max_length=self.config.task.max_length, student=self.student,
            costs_file=self.teacher.root / test_time.COSTS_FILE, device=self.device,
            measure=lambda model: self._latency(model, self.device).median_ms)

    def _optimizer(self) -> torch.optim.Optimizer:
        # Mask scores need a far larger learning rate than the weights (1e-2 vs 3e-5 in nn_pruning).
        groups = [{"params": [p for p in self.student.parameters() if p.requires_grad], "lr": self.settings.learning_rate}]
        scores = self.pruner.mask_parameters()
        if scores:
            groups.append({"params": scores, "lr": self.settings.score_learning_rate, "weight_decay": 0.0})
        return torch.optim.AdamW(groups, weight_decay=0.01)

    # ------------------------------------------------------------------ training

    def sparsity_at(self, step: int) -> float:
        s = self.settings
        if s.method == "group_lasso":
            return group_lasso.group_lasso_sparsity(step, max_steps=s.max_steps, final=s.sparsity,
                                                    cooldown_fraction=s.cooldown_fraction)
        return cubic_sparsity(step, max_steps=s.max_steps, final=s.sparsity,
                              warmup_fraction=s.warmup_fraction, cooldown_fraction=s.cooldown_fraction)

    def _prune(self, step: int) -> None:
        """Masks for this step; test_time instead removes structure at the steps of its rounds."""
        if not isinstance(self.pruner, test_time.TestTimePruner):
            self.pruner.update_masks(self.sparsity_at(step))
            return
        target = self.pruner.target_at(step)
        if target is not None:
            self._replace_student(self.pruner.prune(self.student, target))

    def _replace_student(self, student: torch.nn.Module) -> None:
        if student is not self.student:
            self.student = student.to(self.device)
            self.optimizer = self._optimizer()  # the old parameters are gone

    def train_step(self, step: int) -> float:
        self._prune(step)
        self.student.train()
        indices = self.plan.indices(step)
        with self.autocast:
            logits = self.student(**take(self.train_set.inputs, indices, self.device)).logits
        loss = distillation_loss(logits, self.train_set.teacher_logits[indices].to(self.device),
                                 self.train_set.labels[indices].to(self.device),
                                 temperature=self.settings.temperature, alpha=self.settings.alpha)
        penalty = self.pruner.penalty(step)
        if penalty is not None:
            loss = loss + penalty
        if not torch.isfinite(loss):
            raise TrialError(
                f"loss is {loss.item()} at step {step} (sparsity {self.pruner.current_sparsity:.2f}, "
                f"precision {self.settings.precision}, learning_rate {self.settings.learning_rate})"
            )
        self.scaler.scale(loss).backward()
        self.scaler.unscale_(self.optimizer)
        torch.nn.utils.clip_grad_norm_(self.student.parameters(), 1.0)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        return float(loss.item())

    def train_and_measure(self, report: Reporter, *, progress: bool) -> dict[str, Any]:
        from tqdm.auto import tqdm

        emissions = self.settings.emissions
        with EmissionsMeter(country_iso_code=emissions.country_iso_code, measure_power_secs=emissions.measure_power_secs) as meter:
            bar = tqdm(total=self.settings.max_steps, initial=self.progress.step, desc="trial", unit="step", disable=not progress)
            segment_start = time.perf_counter()
            while self.progress.step < self.settings.max_steps:
                self.progress.last_loss = self.train_step(self.progress.step)
                self.progress.step += 1
                bar.update(1)
                bar.set_postfix(loss=f"{self.progress.last_loss:.3f}", sparsity=f"{self.pruner.current_sparsity:.2f}")
                if self.progress.step % self.settings.eval_every == 0 and self.progress.step < self.settings.max_steps:
                    self.progress.train_seconds += time.perf_counter() - segment_start
                    report(self._intermediate_metrics(), self.save_checkpoint(meter))
                    segment_start = time.perf_counter()
            bar.close()
            self.progress.train_seconds += time.perf_counter() - segment_start
            final = self._finish()
        final[M.EMISSIONS_KG] = self.progress.emissions_kg + meter.emissions_kg
        final[M.ENERGY_KWH] = self.progress.energy_kwh + meter.energy_kwh
        final[M.DONE] = True
        report(final, None)
        return final

    @torch.no_grad()
    def _intermediate_metrics(self) -> dict[str, Any]:
        quality = evaluate(self.student, self.eval_inputs, self.eval_split.labels, device=self.device, autocast=self.autocast)
        return {M.STEP: self.progress.step, M.TRAIN_LOSS: self.progress.last_loss,
                M.CURRENT_SPARSITY: self.pruner.current_sparsity, M.ACCURACY: quality.accuracy,
                M.F1_MACRO: quality.f1_macro, M.DONE: False}

    # ------------------------------------------------------------------ the end

    @torch.no_grad()
    def _finish(self) -> dict[str, Any]:
        self.student.eval()
        if not isinstance(self.pruner, test_time.TestTimePruner):  # test_time's student is compact already
            self.pruner.update_masks(self.settings.sparsity)
            self.pruner.bake(self.student)
        extras = self._method_metrics()
        if self.settings.filled:
            extras[filling.FILLED_WEIGHTS] = self._fill()
        compacted, structure = compact_and_verify(self.student)
        if self.settings.filled:
            extras[filling.FILL_SECONDS] = self._fine_tune_filled(compacted)
        extras.update(prepare_for_inference_precision(compacted, self.settings.inference_precision))
        sparsity = weight_sparsity(compacted, dense_total=self.dense_weights)
        save_compacted(compacted, self.output_dir / MODEL_DIR, tokenizer=self.tokenizer)
        params = count_params(compacted)
        serving = to_inference_precision(copy.deepcopy(compacted), self.settings.inference_precision, self.device)
        serving_device = torch.device("cpu") if self.settings.inference_precision == "int8" else self.device
        quality = evaluate(serving, self.eval_inputs, self.eval_split.labels, device=serving_device)
        student_latency = self._latency(serving, serving_device)
        teacher_latency = self._latency(self._dense_teacher(serving_device), serving_device)
        teacher_accuracy = float(self.teacher.baseline[M.ACCURACY])
        return {
            M.ACCURACY: quality.accuracy, M.F1_MACRO: quality.f1_macro,
            M.ACCURACY_DROP: teacher_accuracy - quality.accuracy,
            M.LATENCY_MS: student_latency.median_ms, M.LATENCY_P95_MS: student_latency.p95_ms,
            M.SPEEDUP: teacher_latency.median_ms / student_latency.median_ms,
            M.PARAMS: params, M.SPARSITY: sparsity,
            **self._structure_metrics(structure),
            M.TRAIN_SECONDS: self.progress.train_seconds,
            "teacher_accuracy": teacher_accuracy, "teacher_latency_ms": teacher_latency.median_ms,
            "layer_heads": list(structure.layer_heads), "layer_ffn": list(structure.layer_intermediate_sizes),
            M.STEP: self.progress.step, M.TRAIN_LOSS: self.progress.last_loss, **extras,
        }

    def _structure_metrics(self, structure) -> dict[str, Any]:
        """Heads removed and FFN kept relative to the dense model (test_time's student shrank during training)."""
        config = self.student.config
        dense_heads = config.num_hidden_layers * config.num_attention_heads
        dense_ffn = config.num_hidden_layers * config.intermediate_size
        return {M.HEADS_PRUNED: dense_heads - sum(structure.layer_heads),
                M.FFN_KEPT: sum(structure.layer_intermediate_sizes) / dense_ffn}

    def _method_metrics(self) -> dict[str, Any]:
        if isinstance(self.pruner, test_time.TestTimePruner):
            # Ranking, removal and compaction, inside train_seconds (pruning + fine-tuning time).
            return {test_time.PRUNE_SECONDS: self.pruner.seconds}
        return {}

    def _fill(self) -> int:
        """Hybrid filled: re-initialise the zeros inside live heads (before compaction, which keeps them)."""
        s = self.settings
        source = self._dense_teacher(self.device) if s.fill_init == "teacher" else None
        generator = torch.Generator().manual_seed(s.seed)
        return filling.fill_live_zeros(self.student, source=source, init_std=self.student.config.initializer_range,
                                       generator=generator)

    def _fine_tune_filled(self, compacted: torch.nn.Module) -> float:
        """Distil the filled, compacted student for fill_steps; its time counts as training time."""
        s = self.settings
        self.progress.last_loss, seconds = filling.distil(
            compacted, self.train_set, steps=s.fill_steps, batch_size=s.batch_size, seed=s.seed,
            learning_rate=s.learning_rate, temperature=s.temperature, alpha=s.alpha, precision=s.precision,
            device=self.device)
        self.progress.train_seconds += seconds
        return seconds

    def _dense_teacher(self, device: torch.device):
        # The deployable baseline: the dense fine-tuned teacher at fp32, timed in this process
        # with the same settings, so that speedups compare across heterogeneous workers.
        _, teacher = load_pretrained(str(self.teacher.model_dir), self.data)
        return teacher.to(device).eval()

    def _latency(self, model, device: torch.device):
        latency = self.settings.latency
        return measure_latency(model, batch_size=latency.batch_size, seq_len=latency.seq_len,
                               vocab_size=self.student.config.vocab_size, device=device,
                               min_run_time=latency.min_run_time, threads=latency.threads)

    # ------------------------------------------------------------------ checkpoints

    @property
    def checkpoint_dir(self) -> Path:
        return self.output_dir / CHECKPOINT_DIR

    def save_checkpoint(self, meter: EmissionsMeter | None = None) -> Path:
        """Weights and the pruner's state (mask scores, group weights, fixed masks) as safetensors, the
        student's structure when it was compacted during training, optimiser and scaler state, and
        the progress so far."""
        directory = self.checkpoint_dir
        directory.mkdir(parents=True, exist_ok=True)
        save_file({k: v.detach().contiguous().cpu() for k, v in self.student.state_dict().items()}, directory / "student.safetensors")
        if isinstance(self.student.config, PrunedBertConfig):  # structure removed during training (test_time)
            (directory / "student_config.json").write_text(self.student.config.to_json_string())
        pruner_state = {k: v.detach().contiguous().cpu() for k, v in self.pruner.state_dict().items()}
        if pruner_state:
            save_file(pruner_state, directory / "pruner.safetensors")
        torch.save({"optimizer": self.optimizer.state_dict(), "scaler": self.scaler.state_dict()}, directory / "optimizer.pt")
        progress = asdict(self.progress)
        if meter is not None:  # emissions so far, so that a resumed trial reports the total
            running = meter.snapshot()
            progress["emissions_kg"] += running.emissions_kg
            progress["energy_kwh"] += running.energy_kwh
        (directory / "state.json").write_text(json.dumps(progress))
        return directory

    def load_checkpoint(self) -> bool:
        directory = self.checkpoint_dir
        if not (directory / "state.json").is_file():
            return False
        if (directory / "student_config.json").is_file():
            structure = PrunedBertConfig.from_json_file(str(directory / "student_config.json"))
            self._replace_student(PrunedBertForSequenceClassification(structure))
        self.student.load_state_dict(load_file(directory / "student.safetensors", device=str(self.device)))
        if (directory / "pruner.safetensors").is_file():
            self.pruner.load_state_dict(load_file(directory / "pruner.safetensors", device=str(self.device)))
        states = torch.load(directory / "optimizer.pt", map_location=self.device, weights_only=False)
        self.optimizer.load_state_dict(states["optimizer"])
        self.scaler.load_state_dict(states["scaler"])
        self.progress = _Progress(**json.loads((directory / "state.json").read_text()))
        if not 0 <= self.progress.step <= self.settings.max_steps:
            raise TrialError(
                f"checkpoint {directory} is at step {self.progress.step}, outside this trial's "
                f"0..{self.settings.max_steps} (trial.max_steps): it belongs to another configuration"
            )
        return True
