"""The interface every compression method declares (no torch here: config validation reads it).

A method is a small class: its name, its options (a pydantic model the configuration
nests under ``trial.<name>``), the checks it needs against the model's dimensions (run at
config validation, before any trial starts), the extra metrics it reports, and
``build``, which makes its :class:`~prunetune.trainables.methods._pruner.Pruner` from a
:class:`~prunetune.trainables.methods._pruner.PruningContext` (importing torch only then).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import BaseModel, ConfigDict

if TYPE_CHECKING:
    from prunetune.trainables.families import ModelDims
    from prunetune.trainables.methods._pruner import Pruner, PruningContext
    from prunetune.trainables.training.training_set import DistillationSet


class Options(BaseModel):
    """Base of a method's options: frozen, unknown keys refused (like every config section)."""

    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)


class Method(ABC):
    """A compression method, as the trial and the configuration see it."""

    name: ClassVar[str]
    summary: ClassVar[str]
    #: Options nested under ``trial.<name>`` (None: the method has none).
    options: ClassVar[type[Options] | None] = None
    #: Extra metric keys the method reports, with their meaning (they reach results.parquet).
    metrics: ClassVar[dict[str, str]] = {}
    #: Old flat ``trial.*`` keys that now live under ``trial.<name>``: old -> new (dotted, without ``trial.``).
    moved_keys: ClassVar[dict[str, str]] = {}
    #: Whether the method can prune to ``trial.target_speedup`` (whole heads and FFN groups, by
    #: the per-layer latency table) instead of to ``trial.sparsity``.
    supports_target_speedup: ClassVar[bool] = False

    def model_problems(self, trial: Any, dims: "ModelDims") -> list[str]:
        """Why ``trial`` (a TrialConfig) cannot run on a model of ``dims``; empty when it can."""
        return []

    @abstractmethod
    def build(self, context: "PruningContext") -> "Pruner":
        """The pruner of one trial (the method's implementation is imported here, with torch)."""

    def training_set(self, context: "PruningContext") -> "DistillationSet":
        """What the student distils from: by default the whole training split with its targets, encoded
        as the task kind encodes it."""
        from prunetune.trainables.training.training_set import encoded_set

        encoded = context.kind.encode(context.tokenizer, context.train_split, max_length=context.max_length,
                                      task=context.task)
        return encoded_set(encoded.inputs, encoded.targets, context.teacher_logits)


def block_size_fits(block_size: int, dims: "ModelDims") -> bool:
    """A block must tile the hidden size and must not straddle a head boundary: it either
    divides the head size or covers whole heads, so that a dead head stays a set of whole
    blocks. With grouped-query attention it must tile the key/value heads' rows too."""
    head = dims.head_size
    fits = dims.hidden_size % block_size == 0 and (head % block_size == 0 or block_size % head == 0)
    if dims.num_kv_heads:
        fits = fits and (dims.num_kv_heads * head) % block_size == 0
    return fits


def valid_block_sizes(dims: "ModelDims", candidates=(1, 2, 4, 8, 16, 32, 64, 128)) -> list[int]:
    return [b for b in candidates if block_size_fits(b, dims)]


def block_size_problem(key: str, block_size: int, dims: "ModelDims") -> str | None:
    """Why ``block_size`` (the value of ``key``) cannot tile the attention maps of ``dims``."""
    if block_size_fits(block_size, dims):
        return None
    kv = " (and the key/value heads' rows, in grouped-query attention)" if dims.num_kv_heads else ""
    return (f"{key} = {block_size}: must divide the hidden size{kv} and either divide the head size or be a "
            f"multiple of it, for {dims.describe()}; valid: {valid_block_sizes(dims)}")


class BlockMethod(Method):
    """Movement and magnitude: one block pruner on the cubic schedule, differing only in the scorer."""

    supports_target_speedup = True

    def model_problems(self, trial: Any, dims: "ModelDims") -> list[str]:
        problem = block_size_problem("trial.block_size", trial.block_size, dims)
        return [problem] if problem else []

    @abstractmethod
    def scorer(self, context: "PruningContext"):
        """``views -> scorer module`` for this method."""

    def mask_learning_rate(self, trial: Any) -> float:
        return 1e-2  # unused by scorers that learn nothing

    def build(self, context: "PruningContext") -> "Pruner":
        from prunetune.trainables.methods._block import BlockPruner, SpeedTarget
        from prunetune.trainables.methods._masks import cubic_sparsity
        from prunetune.trainables.methods._speed import speed_table

        s = context.settings
        ramp = dict(max_steps=s.max_steps, warmup_fraction=s.warmup_fraction, cooldown_fraction=s.cooldown_fraction)
        speed = None
        if s.target_speedup is not None:
            speed = SpeedTarget(table=speed_table(context), speedup=s.target_speedup,
                                progress_at=lambda step: cubic_sparsity(step, final=1.0, **ramp))
        return BlockPruner(context.student, context.family, scorer=self.scorer(context), block_size=s.block_size,
                           sparsity_at=lambda step: cubic_sparsity(step, final=s.sparsity or 0.0, **ramp),
                           final_sparsity=s.sparsity, min_head_density=s.min_head_density,
                           mask_learning_rate=self.mask_learning_rate(s), speed=speed)
