"""One compression trial: prune a copy of the teacher while it distils, compact it, measure it.

``run_trial`` runs in-process (no Ray); the Ray Tune trainable wraps it. The trial drives
the method's pruner (``prunetune.trainables.methods``) over the family's layer views
(``prunetune.trainables.families``) and never branches on a method or family name. Every
``trial.eval_every`` steps it reports intermediate metrics and a checkpoint through one
reporting function; the final report carries every key of the metric contract. In a search
whose scheduler ranks trials at rungs (``trial.report_objectives``), it also reports at each
rung, and evaluates there only: a report between rungs carries its checkpoint and its loss,
since no one ranks it.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import json
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

import torch
from safetensors.torch import load_file, save_file

from prunetune import metrics as M
from prunetune.config import Config, model_problems, scheduler_rungs
from prunetune.errors import ConfigError, TrialError
from prunetune.intervals import interval_columns, paired_intervals, save_example_scores
from prunetune.names import CHECKPOINT_DIR, MODEL_DIR, RESULT_FILE
from prunetune.trainables.families import family_of, is_compacted
from prunetune.trainables.families._modeling import layer_views
from prunetune.trainables.families.compaction import (
    compact,
    compact_and_verify,
    model_of_structure,
    save_compacted,
)
from prunetune.trainables.measure.energy import EmissionsMeter
from prunetune.trainables.measure.latency import measure_alternating, measure_latency
from prunetune.trainables.measure.latency import uses_token_types
from prunetune.trainables.measure.latency_table import hardware_of
from prunetune.trainables.measure.phases import PhaseClock
from prunetune.trainables.measure.retime import latency_figures
from prunetune.trainables.measure.quality import evaluate_task, evaluate_task_examples
from prunetune.trainables.measure.size import (
    count_params,
    count_prunable_weights,
    weight_sparsity,
)
from prunetune.trainables.methods import METHODS
from prunetune.trainables.methods._pruner import Pruner, PruningContext
from prunetune.trainables.runtimes import Served, check_runtime, is_reference, runtime_of, software_versions
from prunetune.trainables.training import filling
from prunetune.trainables.training.batches import BatchPlan, take
from prunetune.trainables.training import worker_cache
from prunetune.trainables.training.data import TaskData
from prunetune.trainables.training.distill import hidden_state_loss, layer_mapping
from prunetune.trainables.training.optimisation import loss_suspects, optimiser_step
from prunetune.trainables.training.precision import (
    autocast_context,
    check_training_precision,
    grad_scaler,
    prepare_for_inference_precision,
    resolve_device,
)
from prunetune.trainables.training.teacher import (
    TeacherArtifacts,
    teacher_example_scores,
)

#: ``report(metrics, checkpoint_dir)``: Ray Tune's report inside Tune, any callable otherwise.
Reporter = Callable[[dict[str, Any], Path | None], None]


def run_trial(config: Config, *, output_dir: str | Path, report: Reporter | None = None,
              progress: bool = False, energy_meter: Callable[[], Any] | None = None,
              measurer: Any = None) -> dict[str, Any]:
    """Run (or resume) one trial and return its final metrics; see the module docstring.

    ``energy_meter`` makes the meter of the trial's energy (a context manager with
    ``snapshot()``, ``energy_kwh``, ``emissions_kg`` and ``estimated``): in a search, the
    trial's share of its node's ledger; by default CodeCarbon on this process alone.
    ``measurer`` takes every latency measurement to the deploy nodes (``search.measure_on``:
    :class:`prunetune.cluster.measure_node.RemoteMeasurer`); by default they are timed here.
    """
    device = resolve_device(config.trial.device)
    # Problems of the configuration surface before any data or model is loaded.
    check_training_precision(config.trial.precision, device)
    check_runtime(config.trial.runtime, config.trial.inference_precision)
    runtime_of(config.trial.runtime).check_device(config.trial.inference_precision, device)
    problems = model_problems(config)
    if problems:
        raise ConfigError(problems)
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    clock = PhaseClock()
    # A worker Ray reuses keeps the data and the teacher from its earlier trials (worker_cache).
    with clock.phase(M.DATA_SECONDS):
        data = worker_cache.task_data(config.task)
    with clock.phase(M.TEACHER_SECONDS):
        teacher = worker_cache.teacher(config, data, progress=progress)
    trial = _Trial(config, teacher, data, device, output_dir, energy_meter=energy_meter, measurer=measurer,
                   clock=clock)
    with clock.phase(M.BUILD_SECONDS):
        trial.load_checkpoint()
    metrics = trial.train_and_measure(report or _no_report, progress=progress)
    (output_dir / RESULT_FILE).write_text(json.dumps({"metrics": metrics, "config": config.to_dict()}, indent=2))
    # A finished trial keeps its model and its result; the checkpoint has served its purpose.
    shutil.rmtree(output_dir / CHECKPOINT_DIR, ignore_errors=True)
    return metrics


def calibration_feeds(inputs: dict[str, torch.Tensor], count: int, *, seed: int) -> list[dict[str, Any]]:
    """``count`` encoded features (a seeded draw) as a quantiser's calibration feeds, each one example
    cut to its own length (right-padded encodings)."""
    total = len(inputs["input_ids"])
    order = torch.randperm(total, generator=torch.Generator().manual_seed(seed))
    feeds = []
    for index in order[:min(count, total)].tolist():
        length = max(1, int(inputs["attention_mask"][index].sum()))
        feeds.append({name: value[index:index + 1, :length].numpy() for name, value in inputs.items()})
    return feeds


def configuration_fingerprint(config: Config) -> str:
    """What a checkpoint must have been written with to be continued: task, teacher and trial settings."""
    identity = {"task": config.task.model_dump(mode="json"),
                "teacher": config.teacher.model_dump(mode="json", exclude={"cache_dir"}),
                "trial": config.trial.model_dump(mode="json")}
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:16]


def detached_copy(*modules: torch.nn.Module) -> tuple[torch.nn.Module, ...]:
    """Deep copies of ``modules`` in one memo (a pruner's views of a student stay views of the copy).

    Masks set on a module during training are graph outputs (straight-through), which
    ``copy.deepcopy`` refuses: the copies get them detached.
    """
    memo: dict[int, Any] = {}
    for module in modules:
        for sub in module.modules():
            for value in vars(sub).values():
                if isinstance(value, torch.Tensor) and not value.is_leaf:
                    memo[id(value)] = value.detach().clone()
    return copy.deepcopy(modules, memo)


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
    def __init__(self, config: Config, teacher: TeacherArtifacts, data: TaskData, device: torch.device, output_dir: Path,
                 *, energy_meter: Callable[[], Any] | None = None, measurer: Any = None,
                 clock: PhaseClock | None = None):
        self.config, self.settings = config, config.trial
        self.energy_meter = energy_meter or self._process_meter
        self.measurer = measurer
        self.clock = clock or PhaseClock()
        self.teacher, self.data, self.device, self.output_dir = teacher, data, device, output_dir
        self.kind = config.task_kind
        self.method = METHODS[self.settings.method]
        torch.manual_seed(self.settings.seed)
        with self.clock.phase(M.TEACHER_SECONDS):  # the student starts as a copy of the teacher
            self.tokenizer, self.student = worker_cache.pretrained_copy(str(teacher.model_dir), data)
            self.student.to(device)
        # Latency is timed on inputs of the task's shape: two segments for a pair or a question and its context.
        self.token_types = self.kind.has_pair(config.task) and uses_token_types(self.student)
        self.dense_weights = count_prunable_weights(self.student)
        views = layer_views(self.student, family_of(self.student))
        self.dense_heads, self.dense_ffn = sum(v.num_heads for v in views), sum(v.ffn_width for v in views)
        with self.clock.phase(M.TEACHER_SECONDS):  # the teacher's cached outputs on the training split
            context = self._pruning_context()
        with self.clock.phase(M.DATA_SECONDS):
            self.train_set = self.method.training_set(context)
            self.eval_split = data.split(config.task.eval_split)
            self.eval_encoded = self.kind.encode(self.tokenizer, self.eval_split, max_length=config.task.max_length,
                                                 task=config.task)
        with self.clock.phase(M.BUILD_SECONDS):
            self.pruner: Pruner = self.method.build(context)
            self.optimizer = self._optimizer()
            self.scaler = grad_scaler(self.settings.precision, device)
            self.rung_table = self._rung_table()
        self.autocast = autocast_context(self.settings.precision, device)
        self.plan = BatchPlan(len(self.train_set), self.settings.batch_size, self.settings.seed)
        self.progress = _Progress()
        with self.clock.phase(M.TEACHER_SECONDS):
            self.layer_teacher = self._dense_teacher(device) if self.settings.layer_distill > 0 else None

    def _pruning_context(self) -> PruningContext:
        return PruningContext(
            settings=self.settings, student=self.student, family=family_of(self.student), tokenizer=self.tokenizer,
            texts=self.data.train.texts, labels=self.data.train.labels,  # a method that must not read labels does not
            teacher_logits=worker_cache.train_logits(self.teacher), max_length=self.config.task.max_length, device=self.device,
            measure_ms=lambda model: self._latency(model, self.device).median_ms, cache_dir=self.teacher.root,
            kind=self.kind, train_split=self.data.train, task=self.config.task, pairs=self.data.train.pairs,
            measurer=self.measurer,
        )

    def _optimizer(self) -> torch.optim.Optimizer:
        # Mask scores need a far larger learning rate than the weights (1e-2 vs 3e-5 in nn_pruning).
        groups = [{"params": [p for p in self.student.parameters() if p.requires_grad], "lr": self.settings.learning_rate}]
        scores = self.pruner.mask_parameters()
        if scores:
            groups.append({"params": scores, "lr": self.pruner.mask_learning_rate, "weight_decay": 0.0})
        return torch.optim.AdamW(groups, weight_decay=0.01)

    # ------------------------------------------------------------------ training

    def _use_student(self, student: torch.nn.Module) -> None:
        """Train ``student`` from now on (a method may replace it with a smaller one)."""
        if student is not self.student:
            self.student = student.to(self.device)
            self.optimizer = self._optimizer()  # the old parameters are gone

    def train_step(self, step: int) -> float:
        self._use_student(self.pruner.before_step(step, self.student))
        self.student.train()
        indices = self.plan.indices(step)
        batch = take(self.train_set.inputs, indices, self.device)
        with self.autocast:
            outputs = self.student(**batch, output_hidden_states=self.layer_teacher is not None)
        loss = self.kind.distillation_loss(self.kind.head_output(outputs),
                                           self.train_set.teacher_logits[indices].to(self.device),
                                           self.train_set.labels[indices].to(self.device),
                                           temperature=self.settings.temperature, alpha=self.settings.alpha)
        if self.layer_teacher is not None:
            loss = loss + self.settings.layer_distill * self._layer_loss(batch, outputs.hidden_states)
        penalty = self.pruner.penalty(step)
        if penalty is not None:
            loss = loss + penalty
        return optimiser_step(loss, self.student, self.optimizer, self.scaler, describe=lambda: (
            f"step {step} (sparsity {self.pruner.current_sparsity:.2f}); {loss_suspects(self.settings)}"))

    def _layer_loss(self, batch: dict[str, torch.Tensor], student_hidden) -> torch.Tensor:
        """Hidden-state distillation from the mapped layers of the dense teacher (run alongside)."""
        with torch.no_grad(), self.autocast:
            teacher_hidden = self.layer_teacher(**batch, output_hidden_states=True).hidden_states
        mapping = layer_mapping(len(student_hidden) - 1, len(teacher_hidden) - 1, self.pruner.removed_layers())
        return hidden_state_loss(student_hidden, teacher_hidden, batch["attention_mask"], mapping)

    def train_and_measure(self, report: Reporter, *, progress: bool) -> dict[str, Any]:
        from tqdm.auto import tqdm

        with self.energy_meter() as meter:
            bar = tqdm(total=self.settings.max_steps, initial=self.progress.step, desc="trial", unit="step", disable=not progress)
            segment_start = time.perf_counter()
            while self.progress.step < self.settings.max_steps:
                self.progress.last_loss = self.train_step(self.progress.step)
                self.progress.step += 1
                bar.update(1)
                bar.set_postfix(loss=f"{self.progress.last_loss:.3f}", sparsity=f"{self.pruner.current_sparsity:.2f}")
                if self._reports_at(self.progress.step):
                    self.progress.train_seconds += time.perf_counter() - segment_start
                    with self.clock.phase(M.RUNG_SECONDS):
                        metrics, checkpoint = self._intermediate_report(meter), self.save_checkpoint(meter)
                    report({**metrics, **self._time_split()}, checkpoint)
                    segment_start = time.perf_counter()
            bar.close()
            self.progress.train_seconds += time.perf_counter() - segment_start
            with self.clock.phase(M.FINAL_SECONDS):
                final = self._finish()
            final.update(self._time_split())
        final[M.EMISSIONS_KG] = self.progress.emissions_kg + meter.emissions_kg
        final[M.ENERGY_KWH] = self.progress.energy_kwh + meter.energy_kwh
        final[M.ENERGY_ESTIMATED] = meter.estimated
        final[M.DONE] = True
        report(final, None)
        return final

    def _time_split(self) -> dict[str, float]:
        """Where the trial's time went so far (every report carries it: a stopped trial's row too)."""
        return {**self.clock.totals(), M.TRAIN_SECONDS: self.progress.train_seconds}

    def _process_meter(self) -> EmissionsMeter:
        emissions = self.settings.emissions
        return EmissionsMeter(country_iso_code=emissions.country_iso_code, measure_power_secs=emissions.measure_power_secs)

    @functools.cached_property
    def _rungs(self) -> frozenset[int]:
        """The steps a scheduler ranks this trial at (none outside a search with one)."""
        return frozenset(scheduler_rungs(self.config)) if self.settings.report_objectives else frozenset()

    def _reports_at(self, step: int) -> bool:
        return step < self.settings.max_steps and (step % self.settings.eval_every == 0 or step in self._rungs)

    def _intermediate_report(self, meter) -> dict[str, Any]:
        if self._rungs and self.progress.step not in self._rungs:  # a checkpoint between rungs
            return {M.STEP: self.progress.step, M.TRAIN_LOSS: self.progress.last_loss,
                    M.CURRENT_SPARSITY: self.pruner.current_sparsity, M.DONE: False}
        metrics = self._intermediate_metrics()
        if self.settings.report_objectives:
            metrics.update(self._projected_objectives(meter, quality=metrics))
        return metrics

    def _evaluate(self, model, device: torch.device, autocast=None) -> dict[str, float]:
        """The task's metrics of ``model`` on the evaluation split."""
        return evaluate_task(model, self.eval_encoded, self.eval_split, kind=self.kind, label_names=self.data.label_names,
                             task=self.config.task, device=device, autocast=autocast)

    def _evaluate_with_intervals(self, model, device: torch.device) -> tuple[dict[str, float], dict[str, float]]:
        """The task's metrics of ``model`` on the evaluation split, and the 95% intervals of its headline
        metric and drop (paired with the teacher's examples). Its per-example statistics stay beside the
        model, so that the report can tell whether two trials differ."""
        split = self.config.task.eval_split
        quality, examples = evaluate_task_examples(
            model, self.eval_encoded, self.eval_split, kind=self.kind, label_names=self.data.label_names,
            task=self.config.task, device=device)
        save_example_scores(self.output_dir / M.EXAMPLE_SCORES_FILE, split, examples)
        teacher = teacher_example_scores(self.teacher, self.config, self.data, split)
        found = paired_intervals(examples, teacher, metric=self.kind.headline, seed=self.config.task.seed)
        return quality, interval_columns(found)

    def _drops(self, quality: dict[str, float]) -> dict[str, float]:
        """How much worse than the teacher the student is on each of the task's metrics (``<metric>_drop``)."""
        return {M.drop_key(key): M.quality_drop(key, float(self.teacher.baseline[key]), value)
                for key, value in quality.items()}

    @torch.no_grad()
    def _intermediate_metrics(self) -> dict[str, Any]:
        intervals: dict[str, float] = {}
        if self.settings.report_objectives:
            # A rung also says how sure its headline figure is: a scheduler may rank on its interval.
            quality, examples = evaluate_task_examples(
                self.student, self.eval_encoded, self.eval_split, kind=self.kind, label_names=self.data.label_names,
                task=self.config.task, device=self.device, autocast=self.autocast)
            teacher = teacher_example_scores(self.teacher, self.config, self.data, self.config.task.eval_split)
            found = paired_intervals(examples, teacher, metric=self.kind.headline, seed=self.config.task.seed)
            intervals = interval_columns(found)
        else:
            quality = self._evaluate(self.student, self.device, self.autocast)
        return {M.STEP: self.progress.step, M.TRAIN_LOSS: self.progress.last_loss,
                M.CURRENT_SPARSITY: self.pruner.current_sparsity, **quality, **intervals, M.DONE: False}

    def _rung_table(self):
        """The latency table a rung predicts from (``trial.rung_latency: table``): the dense student's,
        in the trial's runtime and precision, measured once per search by the driver and read here."""
        s = self.settings
        if not s.report_objectives or s.rung_latency != "table":
            return None
        from prunetune.trainables.methods._speed import table_for

        return table_for(self.student, self.teacher.root, s, runtime=s.runtime, precision=s.inference_precision,
                         device=self.device, threads=self._latency_threads(), measurer=self.measurer)

    @torch.no_grad()
    def _projected_objectives(self, meter, *, quality: dict[str, Any]) -> dict[str, Any]:
        """What the trial would score if it stopped now, for a scheduler to rank it by.

        Accuracy is the student's now. Latency is that of the structure it would have if it
        finished now: a copy of the student and its pruner is finished at the target sparsity and
        compacted; the latency table predicts that structure's latency (``trial.rung_latency:
        table``), or the copy is put in the inference precision and timed (``measured``, in the
        timing slot). Emissions so far are scaled to the whole trial.
        """
        started = time.perf_counter()
        student, pruner = detached_copy(self.student, self.pruner)
        student.eval()
        if self.rung_table is not None:
            compacted, structure = compact(pruner.finish(student))
            latency_ms = self.rung_table.predict(list(structure.layer_heads), list(structure.layer_intermediate_sizes))
            params, sparsity = count_params(compacted), weight_sparsity(compacted, dense_total=self.dense_weights)
            return self._projection(meter, quality, latency_ms=latency_ms, params=params, sparsity=sparsity,
                                    started=started)
        compacted, _ = compact_and_verify(pruner.finish(student))
        prepare_for_inference_precision(compacted, self.settings.inference_precision)
        params, sparsity = count_params(compacted), weight_sparsity(compacted, dense_total=self.dense_weights)
        with tempfile.TemporaryDirectory(prefix="prunetune-rung-") as work:
            if self.measurer is None:
                served = self._serve(compacted, work)
                latency_ms = self._latency(served.model, served.device).median_ms
            else:  # timed on a deploy node: the served files travel there with the compacted model
                s = self.settings
                save_compacted(compacted, Path(work) / MODEL_DIR, tokenizer=self.tokenizer)
                runtime_of(s.runtime).save(compacted, Path(work) / MODEL_DIR, precision=s.inference_precision,
                                           device=self.device, calibration=self._calibration)
                latency_ms = self.measurer.retime(self._measure_request(Path(work) / MODEL_DIR, teachers=False))[
                    M.LATENCY_MS]
        return self._projection(meter, quality, latency_ms=latency_ms, params=params, sparsity=sparsity,
                                started=started)

    def _projection(self, meter, quality: dict[str, Any], *, latency_ms: float, params: int, sparsity: float,
                    started: float) -> dict[str, Any]:
        running = meter.snapshot()
        to_whole_trial = self.settings.max_steps / self.progress.step
        return {
            **self._drops({key: quality[key] for key in self.kind.metrics}),
            M.LATENCY_MS: latency_ms,
            M.EMISSIONS_KG: (self.progress.emissions_kg + running.emissions_kg) * to_whole_trial,
            M.ENERGY_KWH: (self.progress.energy_kwh + running.energy_kwh) * to_whole_trial,
            M.PARAMS: params,
            M.SPARSITY: sparsity,
            M.PROJECTION_SECONDS: time.perf_counter() - started,
        }

    # ------------------------------------------------------------------ the end

    @torch.no_grad()
    def _finish(self) -> dict[str, Any]:
        self.student.eval()
        self._use_student(self.pruner.finish(self.student))
        extras = self.pruner.metrics()
        if self.settings.filled:
            extras[M.FILLED_WEIGHTS] = self._fill()
        compacted, structure = compact_and_verify(self.student)
        if self.settings.filled:
            extras[M.FILL_SECONDS] = self._fine_tune_filled(compacted)
        if self.rung_table is not None:  # what the rungs ranked on, for the final structure
            extras[M.TABLE_LATENCY_MS] = self.rung_table.predict(list(structure.layer_heads),
                                                                 list(structure.layer_intermediate_sizes))
        extras.update(prepare_for_inference_precision(compacted, self.settings.inference_precision))
        sparsity = weight_sparsity(compacted, dense_total=self.dense_weights)
        save_compacted(compacted, self.output_dir / MODEL_DIR, tokenizer=self.tokenizer)
        params = count_params(compacted)
        # The model directory ships what is measured: a graph runtime's files, as timed here.
        served = self._serve(copy.deepcopy(compacted), self.output_dir / MODEL_DIR)
        quality, intervals = self._evaluate_with_intervals(served.model, served.device)
        if self.measurer is None:
            latency = self._student_and_teacher_latency(served)
        else:  # on a deploy node, from the files just saved: the model and the runtime's files
            del served
            latency = self.measurer.retime(self._measure_request(self.output_dir / MODEL_DIR, teachers=True))
            latency[M.LATENCY_THREADS] = self._latency_threads()
        return {
            **quality, **self._drops(quality), **intervals,
            **{M.teacher_key(key): float(self.teacher.baseline[key]) for key in quality},
            **latency,
            M.PARAMS: params, M.SPARSITY: sparsity,
            **self._structure_metrics(structure),
            M.TRAIN_SECONDS: self.progress.train_seconds,
            M.LAYER_HEADS: list(structure.layer_heads), M.LAYER_FFN: list(structure.layer_intermediate_sizes),
            M.STEP: self.progress.step, M.TRAIN_LOSS: self.progress.last_loss, **extras,
        }

    def _structure_metrics(self, structure) -> dict[str, Any]:
        """Heads removed and FFN kept relative to the dense student (a method may shrink it during training)."""
        return {M.HEADS_PRUNED: self.dense_heads - sum(structure.layer_heads),
                M.FFN_KEPT: sum(structure.layer_intermediate_sizes) / self.dense_ffn}

    def _fill(self) -> int:
        """Hybrid filled: re-initialise the zeros inside live heads (before compaction, which keeps them)."""
        s = self.settings
        source = self._dense_teacher(self.device) if s.fill_init == "teacher" else None
        generator = torch.Generator().manual_seed(s.seed)
        init_std = float(getattr(self.student.config, "initializer_range", 0.02))
        return filling.fill_live_zeros(self.student, source=source, init_std=init_std, generator=generator)

    def _fine_tune_filled(self, compacted: torch.nn.Module) -> float:
        """Distil the filled, compacted student for fill_steps; its time counts as training time."""
        s = self.settings
        self.progress.last_loss, seconds = filling.distil(
            compacted, self.train_set, steps=s.fill_steps, batch_size=s.batch_size, seed=s.seed,
            learning_rate=s.learning_rate, temperature=s.temperature, alpha=s.alpha, precision=s.precision,
            device=self.device, kind=self.kind)
        self.progress.train_seconds += seconds
        return seconds

    def _dense_teacher(self, device: torch.device):
        # The deployable baseline: the dense fine-tuned teacher at fp32, timed in this process
        # with the same settings, so that speedups compare across heterogeneous workers.
        _, teacher = worker_cache.pretrained_copy(str(self.teacher.model_dir), self.data)
        return teacher.to(device).eval()

    def _latency(self, model, device: torch.device):
        latency = self.settings.latency
        return measure_latency(model, batch_size=latency.batch_size, seq_len=latency.seq_len,
                               vocab_size=self.student.config.vocab_size, device=device,
                               min_run_time=latency.min_run_time, threads=latency.threads,
                               max_spread=latency.max_spread, token_types=self.token_types)

    def _serve(self, compacted: torch.nn.Module, work_dir) -> Served:
        """The compacted student in the trial's runtime and inference precision (a quantiser that
        calibrates does so on the trial's training texts)."""
        s = self.settings
        return runtime_of(s.runtime).serve(compacted, precision=s.inference_precision, device=self.device,
                                           threads=s.latency.threads, work_dir=work_dir,
                                           calibration=self._calibration)

    @functools.cached_property
    def _calibration(self) -> list[dict[str, Any]]:
        """The training texts a post-training quantiser calibrates on, drawn once per trial."""
        return calibration_feeds(self.train_set.inputs, self.settings.calibration_samples, seed=self.settings.seed)

    def _latency_threads(self) -> int:
        return self.settings.latency.threads or torch.get_num_threads()

    def _measure_request(self, model_dir: Path, *, teachers: bool):
        """What a deploy node needs to time ``model_dir`` as this trial would (``search.measure_on``)."""
        from prunetune.trainables.measure.retime import RetimeRequest

        s, latency = self.settings, self.settings.latency
        return RetimeRequest(
            trial_id=self.output_dir.name, model_dir=str(model_dir), teacher_dir=str(self.teacher.model_dir),
            inference_precision=s.inference_precision, device=str(self.device), batch_size=latency.batch_size,
            seq_len=latency.seq_len, threads=self._latency_threads(), min_run_time=latency.min_run_time,
            rounds=latency.rounds if teachers else 1, max_spread=latency.max_spread, runtime=s.runtime,
            token_types=self.token_types, teachers=teachers)

    def _student_and_teacher_latency(self, served: Served) -> dict[str, Any]:
        """The final latency figures, timed here in alternating rounds in the timing slot: the served
        student, the dense fp32 teacher in PyTorch eager (``teacher``) and, unless that is the same
        thing, the dense teacher in the student's runtime and precision (``teacher_runtime``)."""
        latency, device = self.settings.latency, served.device
        teacher = self.layer_teacher if self.layer_teacher is not None else self._dense_teacher(self.device)
        models = {"student": served.model, "teacher": teacher.to(device).eval()}
        if not is_reference(served.runtime, served.precision):
            models["teacher_runtime"] = runtime_of(served.runtime).serve_teacher(
                lambda: copy.deepcopy(teacher), precision=served.precision, device=self.device,
                threads=latency.threads, cache_dir=self.teacher.root).model
        timed = measure_alternating(models, batch_size=latency.batch_size, seq_len=latency.seq_len,
                                    vocab_size=self.student.config.vocab_size, device=device,
                                    min_run_time=latency.min_run_time, threads=latency.threads,
                                    rounds=latency.rounds, max_spread=latency.max_spread, token_types=self.token_types)
        return {**latency_figures(timed), M.LATENCY_THREADS: timed["student"].threads,
                M.LATENCY_HARDWARE: hardware_of(device), M.SOFTWARE: software_versions(served.runtime)}

    # ------------------------------------------------------------------ checkpoints

    @property
    def checkpoint_dir(self) -> Path:
        return self.output_dir / CHECKPOINT_DIR

    def save_checkpoint(self, meter=None) -> Path:
        """Weights and the pruner's state as safetensors, the student's structure when it was
        compacted during training, optimiser and scaler state, and the progress so far."""
        directory = self.checkpoint_dir
        directory.mkdir(parents=True, exist_ok=True)
        save_file({k: v.detach().contiguous().cpu() for k, v in self.student.state_dict().items()}, directory / "student.safetensors")
        if is_compacted(self.student.config):  # structure removed during training
            (directory / "student_config.json").write_text(self.student.config.to_json_string())
        pruner_state = {k: v.detach().contiguous().cpu() for k, v in self.pruner.state_dict().items()}
        if pruner_state:
            save_file(pruner_state, directory / "pruner.safetensors")
        torch.save({"optimizer": self.optimizer.state_dict(), "scaler": self.scaler.state_dict()}, directory / "optimizer.pt")
        progress = {**asdict(self.progress), "fingerprint": configuration_fingerprint(self.config)}
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
        state = json.loads((directory / "state.json").read_text())
        if state.pop("fingerprint", None) != configuration_fingerprint(self.config):
            raise ConfigError(
                f"{directory} holds the checkpoint of a trial with another configuration, which this one must not "
                f"continue: give this trial its own directory (--output), or delete {directory} to start afresh")
        if (directory / "student_config.json").is_file():
            self._use_student(model_of_structure(directory / "student_config.json"))
        self.student.load_state_dict(load_file(directory / "student.safetensors", device=str(self.device)))
        if (directory / "pruner.safetensors").is_file():
            self.pruner.load_state_dict(load_file(directory / "pruner.safetensors", device=str(self.device)))
        states = torch.load(directory / "optimizer.pt", map_location=self.device, weights_only=True)
        self.optimizer.load_state_dict(states["optimizer"])
        self.scaler.load_state_dict(states["scaler"])
        self.progress = _Progress(**state)
        if not 0 <= self.progress.step <= self.settings.max_steps:
            raise TrialError(
                f"checkpoint {directory} is at step {self.progress.step}, outside this trial's "
                f"0..{self.settings.max_steps} (trial.max_steps): it belongs to another configuration"
            )
        return True
