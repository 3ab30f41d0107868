"""One compression trial: prune a copy of the teacher while it distils, compact it, measure it.

``run_trial`` runs in-process (no Ray); the Ray Tune trainable wraps it. Every
``trial.eval_every`` steps it reports intermediate metrics and a checkpoint through one
reporting function; the final report carries every key of the metric contract.
"""

from __future__ import annotations

import copy
import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

import torch
from safetensors.torch import load_file, save_file

from prunetune import metrics as M
from prunetune.config import Config
from prunetune.errors import TrialError
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
    resolve_device,
    to_inference_precision,
)
from prunetune.trainables.pruning import BlockPruner, cubic_sparsity, weight_sparsity
from prunetune.trainables.teacher import TeacherArtifacts, load_pretrained, prepare_teacher

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
        self.pruner = BlockPruner(self.student, method=self.settings.method, block_size=self.settings.block_size)
        self.optimizer = self._optimizer()
        self.scaler = grad_scaler(self.settings.precision, device)
        self.autocast = autocast_context(self.settings.precision, device)
        max_length = config.task.max_length
        self.train_inputs = encode(self.tokenizer, data.train.texts, max_length)
        self.train_labels = torch.tensor(data.train.labels)
        self.teacher_logits = teacher.train_logits()
        self.eval_split = data.split(config.task.eval_split)
        self.eval_inputs = encode(self.tokenizer, self.eval_split.texts, max_length)
        self.plan = BatchPlan(len(self.train_labels), self.settings.batch_size, self.settings.seed)
        self.progress = _Progress()

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
        return cubic_sparsity(step, max_steps=s.max_steps, final=s.sparsity,
                              warmup_fraction=s.warmup_fraction, cooldown_fraction=s.cooldown_fraction)

    def train_step(self, step: int) -> float:
        self.student.train()
        self.pruner.update_masks(self.sparsity_at(step))
        indices = self.plan.indices(step)
        with self.autocast:
            logits = self.student(**take(self.train_inputs, indices, self.device)).logits
        loss = distillation_loss(logits, self.teacher_logits[indices].to(self.device), self.train_labels[indices].to(self.device),
                                 temperature=self.settings.temperature, alpha=self.settings.alpha)
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
        self.pruner.update_masks(self.settings.sparsity)
        self.pruner.bake(self.student)
        sparsity = weight_sparsity(self.student)
        compacted, structure = compact_and_verify(self.student)
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
            M.HEADS_PRUNED: structure.heads_pruned, M.FFN_KEPT: structure.ffn_kept,
            M.TRAIN_SECONDS: self.progress.train_seconds,
            "teacher_accuracy": teacher_accuracy, "teacher_latency_ms": teacher_latency.median_ms,
            "layer_heads": list(structure.layer_heads), "layer_ffn": list(structure.layer_intermediate_sizes),
            M.STEP: self.progress.step, M.TRAIN_LOSS: self.progress.last_loss,
        }

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
        """Weights and scores as safetensors, optimiser and scaler state, and the progress so far."""
        directory = self.checkpoint_dir
        directory.mkdir(parents=True, exist_ok=True)
        save_file({k: v.detach().contiguous().cpu() for k, v in self.student.state_dict().items()}, directory / "student.safetensors")
        scores = {k: v.detach().cpu() for k, v in self.pruner.scores.items()}
        if scores:
            save_file(scores, directory / "scores.safetensors")
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
        self.student.load_state_dict(load_file(directory / "student.safetensors", device=str(self.device)))
        if (directory / "scores.safetensors").is_file():
            for name, tensor in load_file(directory / "scores.safetensors", device=str(self.device)).items():
                self.pruner.scores[name].data.copy_(tensor)
        states = torch.load(directory / "optimizer.pt", map_location=self.device, weights_only=False)
        self.optimizer.load_state_dict(states["optimizer"])
        self.scaler.load_state_dict(states["scaler"])
        self.progress = _Progress(**json.loads((directory / "state.json").read_text()))
        if not math.isfinite(self.progress.step):
            raise TrialError(f"checkpoint {directory} is corrupt: step {self.progress.step}")
        return True
