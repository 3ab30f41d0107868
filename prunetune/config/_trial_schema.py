"""The task, teacher and trial sections: what one trial runs (the keys a search space may vary)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, create_model, model_validator

from prunetune.trainables.methods import moved_keys
from prunetune.trainables.methods import METHODS as METHOD_REGISTRY
from prunetune.trainables.runtimes import pairing_problems
from prunetune.trainables.runtimes import RUNTIMES as RUNTIME_REGISTRY
from prunetune.trainables.tasks import TASKS

Method = Literal.__getitem__(tuple(METHOD_REGISTRY))  # the registry's names
TrainPrecision = Literal["fp32", "fp16", "bf16"]
InferencePrecision = Literal["fp32", "fp16", "bf16", "int8", "sparse24"]
Runtime = Literal.__getitem__(tuple(RUNTIME_REGISTRY))  # the registry's names
FillInit = Literal["teacher", "random"]

METHODS: tuple[str, ...] = tuple(METHOD_REGISTRY)
TRAIN_PRECISIONS: tuple[str, ...] = TrainPrecision.__args__
INFERENCE_PRECISIONS: tuple[str, ...] = InferencePrecision.__args__


class _Section(BaseModel):
    """Frozen, strict: unknown keys are errors, values are never silently coerced to str."""

    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)


TaskKindName = Literal.__getitem__(tuple(TASKS))  # the registry's names


class TaskConfig(_Section):
    kind: TaskKindName = Field("classification", description="what the encoder is deployed for: classification "
                               "(one text or a pair), regression, token_classification, question_answering")
    dataset: str = Field("bbc_news", description="built-in name | .csv/.json/.jsonl/.parquet path | HF dataset id "
                         "| a dataset saved with save_to_disk")
    text_column: str = "text"
    text_pair_column: str | None = Field(None, description="a second text per row (sentence pairs): classification "
                                         "and regression")
    label_column: str = Field("label", description="classification: class names or ids; regression: a number")
    tokens_column: str = Field("tokens", description="token_classification: a list of words per row")
    tags_column: str = Field("tags", description="token_classification: a tag per word (strings, or ids with "
                             "the dataset's ClassLabel names)")
    question_column: str = Field("question", description="question_answering: the question")
    context_column: str = Field("context", description="question_answering: the context the answer is a span of")
    answers_column: str = Field("answers", description='question_answering: {"text": [...], "answer_start": [...]}')
    doc_stride: int = Field(32, ge=1, description="question_answering: tokens shared by consecutive windows of a "
                            "long context")
    max_answer_length: int = Field(30, ge=1, description="question_answering: longest answer span, in tokens")
    max_length: int = Field(128, ge=8, le=4096)
    seed: int = 0
    validation_fraction: float = Field(0.15, gt=0, lt=0.5)
    test_fraction: float = Field(0.15, gt=0, lt=0.5)
    eval_split: Literal["validation", "test"] = "validation"
    max_train_samples: int | None = Field(None, ge=2)
    max_eval_samples: int | None = Field(None, ge=2)
    hf_config: str | None = Field(None, description="configuration name of a HF dataset")

    @model_validator(mode="after")
    def _windows_fit(self) -> "TaskConfig":
        if self.kind == "question_answering" and self.doc_stride >= self.max_length // 2:
            raise ValueError(f"task.doc_stride = {self.doc_stride}: must be below half of task.max_length "
                             f"({self.max_length}), or consecutive windows of a context would barely move")
        return self

    @model_validator(mode="after")
    def _pair_only_where_read(self) -> "TaskConfig":
        if self.text_pair_column is not None and self.kind not in ("classification", "regression"):
            raise ValueError(f"task.text_pair_column = {self.text_pair_column!r} with task.kind = {self.kind!r}: a "
                             "second text is read by classification and regression (question_answering reads "
                             "task.question_column and task.context_column)")
        return self


class TeacherConfig(_Section):
    model: str = Field("minilm-l6", description="built-in name | local HF model dir | hub id")
    epochs: float = Field(3.0, gt=0)
    batch_size: int = Field(32, ge=1)
    learning_rate: float = Field(5e-5, gt=0, lt=1)
    max_steps: int | None = Field(None, ge=1, description="cap on fine-tuning steps")
    cache_dir: str | None = Field(None, description="where fine-tuned teachers are cached")


class LatencyConfig(_Section):
    batch_size: int = Field(1, ge=1)
    seq_len: int = Field(128, ge=1)
    min_run_time: float = Field(1.0, gt=0, le=300, description="seconds of timing per model, over all rounds")
    threads: int | None = Field(None, ge=1, description="CPU threads; default: the CPUs the trial was given "
                                "(in a search, cluster.cpus_per_trial; alone, torch's own count)")
    rounds: int = Field(5, ge=1, le=50, description="alternating rounds in which the student and the dense "
                        "teacher are timed")
    max_spread: float = Field(0.1, gt=0, description="a latency whose round medians spread wider than this "
                              "(interquartile range / median) is measured again, then flagged noisy")


class EmissionsConfig(_Section):
    country_iso_code: str = Field("USA", min_length=3, max_length=3)
    measure_power_secs: float = Field(5.0, gt=0)


DEFAULT_EVAL_EVERY = 50
#: Beyond these the distillation loss is scaled by thousands and training diverges, or learns only
#: the scaled term (published recipes use weights of 0.1 to 10 and temperatures of 1 to 20).
MAX_LOSS_WEIGHT = 100.0
MAX_TEMPERATURE = 100.0


class _TrialSettings(_Section):
    """The keys every method shares; each method's own options are added below, under its name."""

    method: Method = "movement"
    sparsity: float | None = Field(0.5, ge=0, lt=1, description="fraction of the prunable encoder weights to "
                                   "remove; null (and a reported result) when trial.target_speedup is set")
    target_speedup: float | None = Field(
        None, gt=1, description="prune to this speed-up over the dense teacher in the same runtime and precision, "
        "predicted by the per-layer latency table, instead of to trial.sparsity")
    layer_distill: float = Field(
        0.0, ge=0, le=MAX_LOSS_WEIGHT, description="weight of the distillation of hidden states of mapped teacher "
        "layers, beside the logit distillation (0: logits only)")
    block_size: int = Field(32, ge=1)
    min_head_density: float = Field(
        0.25, ge=0, lt=1, description="a head keeping less than this fraction of its Q, K or V blocks is removed whole"
    )
    temperature: float = Field(2.0, gt=0, le=MAX_TEMPERATURE, description="distillation temperature; the "
                               "distillation loss is scaled by its square")
    alpha: float = Field(0.9, ge=0, le=1, description="weight of distillation vs task loss")
    precision: TrainPrecision = "fp32"
    inference_precision: InferencePrecision = "fp32"
    runtime: Runtime = Field("torch", description="what the student is served, measured and exported in: "
                             + ", ".join(f"{name} ({r.label})" for name, r in RUNTIME_REGISTRY.items()))
    calibration_samples: int = Field(
        300, ge=1, le=100_000, description="training texts a post-training int8 quantiser calibrates on "
        "(trial.runtime: openvino)")
    max_steps: int = Field(300, ge=1)
    batch_size: int = Field(16, ge=1)
    learning_rate: float = Field(3e-5, gt=0, lt=1)
    warmup_fraction: float = Field(0.1, ge=0, lt=1, description="dense steps before pruning starts")
    cooldown_fraction: float = Field(0.2, ge=0, lt=1, description="steps at the final sparsity")
    eval_every: int = Field(DEFAULT_EVAL_EVERY, ge=1, description="steps between intermediate reports and "
                            "checkpoints; default 50, or max_steps when that is smaller")
    seed: int = 0
    report_objectives: bool = Field(
        False, description="intermediate reports also carry the objectives the trial would score if it stopped "
        "there (the asha and moasha schedulers rank trials on them and turn this on)")
    rung_latency: Literal["table", "measured"] = Field(
        "table", description="the latency a rung ranks on: predicted by the latency table from the structure the "
        "trial would end with (milliseconds; the table is measured once per search), or measured by compacting, "
        "serving and timing a copy (seconds per rung)")
    device: str = Field("auto", pattern=r"^(auto|cpu|cuda(:\d+)?)$")
    # hybrid filled: after compaction, the zeros left inside live heads are re-initialised and
    # the compacted student distils again for fill_steps steps.
    filled: bool = Field(False, description="re-initialise the zeros inside live heads after compaction and fine-tune again")
    fill_steps: int = Field(100, ge=1, description="distillation steps after filling (on top of max_steps)")
    fill_init: FillInit = Field("teacher", description="filled zeros take the dense teacher's values, or a fresh random init")
    latency: LatencyConfig = LatencyConfig()
    emissions: EmissionsConfig = EmissionsConfig()

    @model_validator(mode="before")
    @classmethod
    def _default_evaluation(cls, data: Any) -> Any:
        """Unless set, report (and checkpoint) every 50 steps, or once at the end of a shorter trial."""
        if isinstance(data, dict) and "eval_every" not in data:
            steps = data.get("max_steps", DEFAULT_EVAL_EVERY)
            if isinstance(steps, int) and not isinstance(steps, bool) and steps >= 1:
                data = {**data, "eval_every": min(DEFAULT_EVAL_EVERY, steps)}
        return data

    @model_validator(mode="before")
    @classmethod
    def _speed_replaces_sparsity(cls, data: Any) -> Any:
        """A target speed-up replaces the sparsity target: the sparsity becomes a result."""
        if isinstance(data, dict) and data.get("target_speedup") is not None:
            data = {**data, "sparsity": None}
        return data

    @model_validator(mode="after")
    def _one_pruning_target(self) -> "TrialConfig":
        if self.sparsity is None and self.target_speedup is None:
            raise ValueError("set trial.sparsity (a fraction of weights to remove) or trial.target_speedup")
        if self.target_speedup is not None and not METHOD_REGISTRY[self.method].supports_target_speedup:
            able = [name for name, method in METHOD_REGISTRY.items() if method.supports_target_speedup]
            raise ValueError(f"trial.target_speedup with trial.method = {self.method!r}: {self.method} prunes to "
                             f"trial.sparsity; methods that prune to a speed-up: {', '.join(able)}")
        return self

    @model_validator(mode="after")
    def _runtime_serves_precision(self) -> "TrialConfig":
        problems = pairing_problems(self.runtime, self.inference_precision)
        if problems:
            raise ValueError("; ".join(problems))
        return self

    @model_validator(mode="after")
    def _evaluation_fits(self) -> "TrialConfig":
        if self.eval_every > self.max_steps:
            raise ValueError(f"trial.eval_every must be <= trial.max_steps (a trial reports and checkpoints every "
                             f"eval_every steps), got {self.eval_every} > {self.max_steps}")
        return self

    @model_validator(mode="after")
    def _schedule_fits(self) -> "TrialConfig":
        if self.warmup_fraction + self.cooldown_fraction >= 1:
            raise ValueError(
                "trial.warmup_fraction + trial.cooldown_fraction must be < 1, got "
                f"{self.warmup_fraction} + {self.cooldown_fraction}"
            )
        return self


#: Old flat trial keys -> where they live now (without ``trial.``).
MOVED_KEYS: dict[str, str] = moved_keys()

#: The trial section: the shared keys, and each method's options under the method's name.
TrialConfig = create_model(
    "TrialConfig",
    __base__=_TrialSettings,
    __doc__="One trial's configuration: shared keys, and each method's options under its name.",
    **{name: (method.options, Field(default_factory=method.options, description=method.summary))
       for name, method in METHOD_REGISTRY.items() if method.options is not None},
)
