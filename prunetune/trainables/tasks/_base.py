"""The interface every task kind declares (no torch at import: configuration validation reads it).

A task kind says which columns of a dataset it reads and how their values must look, how a
split is tokenised into model inputs and training targets, which transformers head it
trains (``AutoModelFor...``) and which outputs that head returns, how a student distils
from the teacher's cached outputs, how predictions are scored, and how the exported model
is served by ``transformers.pipeline``. The trial, the teacher, the ONNX export and the
export never branch on a kind's name: they call these methods.

Targets are one tensor per encoded feature (a class id, a score, a tag id per token with
-100 where no word starts, or the start and end token of the answer), so that a
distillation set, a batch plan and a checkpoint hold the same shapes for every kind.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from prunetune import metrics as M

if TYPE_CHECKING:
    import torch

    from prunetune.intervals import ExampleScores

    from prunetune.trainables.training.data import Split

#: Targets a loss ignores (transformers' convention): tokens that start no word, padding.
IGNORED = -100


@dataclass
class Encoded:
    """A split tokenised for a task: model inputs and targets, one row per feature.

    A feature is an example, except in question answering, where a long context gives several
    overlapping windows (``feature_examples[f]`` is the example of window ``f``, ``offsets[f]``
    the character span of each of its tokens in the context, None outside the context). In
    token classification ``word_ids[f]`` maps each token to its word (None: no word).
    """

    inputs: dict[str, "torch.Tensor"]
    targets: "torch.Tensor"
    feature_examples: list[int] | None = None
    offsets: list[list[tuple[int, int] | None]] | None = None
    word_ids: list[list[int | None]] | None = None

    def __len__(self) -> int:
        return len(self.targets)


@dataclass(frozen=True)
class Columns:
    """The columns one kind reads: config key -> (column name, what each value must be)."""

    names: dict[str, str]
    checks: dict[str, Callable[[Any], str | None]] = field(default_factory=dict)


class TaskKind(ABC):
    """One kind of task (classification, regression, ...), as the trial and the configuration see it."""

    name: ClassVar[str]
    summary: ClassVar[str]
    #: transformers' head suffix: ``Bert`` + head is the family's class for this kind.
    head: ClassVar[str]
    #: ``transformers.pipeline`` task that serves an exported model.
    pipeline_task: ClassVar[str]
    #: Methods that cannot run on this kind -> why (refused when the configuration loads).
    refused_methods: ClassVar[dict[str, str]] = {}
    #: Whether carved splits are stratified by label (classification only).
    stratified: ClassVar[bool] = False

    @property
    def metrics(self) -> tuple[str, ...]:
        return M.TASK_METRICS[self.name]

    @property
    def headline(self) -> str:
        return M.headline_metric(self.name)

    @property
    def auto_class(self) -> str:
        return f"AutoModel{self.head}"

    # ------------------------------------------------------------------ data

    @abstractmethod
    def columns(self, task: Any) -> Columns:
        """The columns to read for ``task`` (a TaskConfig) and the check of each value."""

    def has_pair(self, task: Any) -> bool:
        """Whether an input holds two texts (a sentence pair, a question and its context)."""
        return False

    @abstractmethod
    def targets(self, values: dict[str, list[Any]], task: Any, class_names: dict[str, tuple[str, ...]]
                ) -> tuple[list[Any], tuple[str, ...]]:
        """(one target per row, label names): class ids, scores, tag ids per word, or answers.

        ``class_names`` holds the ClassLabel names a Hugging Face dataset gives a column.
        """

    def split_parts(self, values: dict[str, list[Any]], task: Any) -> tuple[list[Any], list[Any] | None]:
        """(first input, second input or None) of every row, as a Split keeps them."""
        return values["text_column"], values.get("text_pair_column") if self.has_pair(task) else None

    # ------------------------------------------------------------------ model

    def model_kwargs(self, label_names: tuple[str, ...]) -> dict[str, Any]:
        """What ``AutoModelFor...from_pretrained`` needs to build this kind's head."""
        labels = dict(enumerate(label_names))
        return {"num_labels": len(label_names), "id2label": labels, "label2id": {v: k for k, v in labels.items()}}

    @abstractmethod
    def encode(self, tokenizer, split: "Split", *, max_length: int, task: Any) -> Encoded:
        """Tokenise ``split``: padded to ``max_length``, with one target per feature."""

    def head_output(self, outputs) -> "torch.Tensor":
        """The head's outputs as one tensor per feature (what the teacher caches and distils)."""
        return outputs.logits

    def loss_kwargs(self, targets: "torch.Tensor") -> dict[str, "torch.Tensor"]:
        """The targets as the model's own loss takes them (the teacher's fine-tuning)."""
        return {"labels": targets}

    @abstractmethod
    def distillation_loss(self, student: "torch.Tensor", teacher: "torch.Tensor", targets: "torch.Tensor", *,
                          temperature: float, alpha: float) -> "torch.Tensor":
        """alpha x distillation from the teacher's outputs + (1 - alpha) x the task loss."""

    @abstractmethod
    def pseudo_targets(self, teacher: "torch.Tensor", targets: "torch.Tensor") -> "torch.Tensor":
        """Targets made from the teacher's outputs (a method that must not read labels); only
        which positions carry a target is read from ``targets``."""

    # ------------------------------------------------------------------ quality

    @abstractmethod
    def score(self, outputs: "torch.Tensor", encoded: Encoded, split: "Split", label_names: tuple[str, ...],
              task: Any) -> dict[str, float]:
        """The kind's metrics (:attr:`metrics`) of ``outputs`` (head outputs of every feature)."""

    @abstractmethod
    def example_scores(self, outputs: "torch.Tensor", encoded: Encoded, split: "Split", label_names: tuple[str, ...],
                       task: Any) -> "ExampleScores":
        """The headline metric of ``outputs`` as per-example statistics (one row per example of
        ``split``), whose totals give the metric: what its bootstrap intervals resample."""

    def evaluate_outputs(self, outputs: "torch.Tensor", encoded: Encoded, split: "Split",
                         label_names: tuple[str, ...], task: Any) -> tuple[dict[str, float], "ExampleScores"]:
        """:meth:`score` and :meth:`example_scores` of the same outputs (a kind whose predictions are
        costly to decode decodes them once)."""
        return self.score(outputs, encoded, split, label_names, task), self.example_scores(
            outputs, encoded, split, label_names, task)

    # ------------------------------------------------------------------ serving

    def pipeline_kwargs(self) -> dict[str, Any]:
        """Options of :attr:`pipeline_task` that serve this kind as it was scored."""
        return {}


def refused_test_time(why: str) -> dict[str, str]:
    """``refused_methods`` of a kind without a class per example: test-time pruning ranks heads by it."""
    return {"test_time": f"it ranks heads by agreement with the teacher's class label of each example, and {why}"}


# --------------------------------------------------------------------------- value checks


def expect_text(value: Any) -> str | None:
    """Why ``value`` is not a text (None when it is)."""
    return None if isinstance(value, str) else _found(value, "text (str)")


def expect_number(value: Any) -> str | None:
    import math
    import numbers

    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return _found(value, "a number")
    return None if math.isfinite(float(value)) else _found(value, "a finite number")


def expect_words(value: Any) -> str | None:
    words = _as_list(value)
    if words is None or not words or not all(isinstance(w, str) for w in words):
        return _found(value, "a non-empty list of words (str)")
    return None


def expect_tags(value: Any) -> str | None:
    tags = _as_list(value)
    if tags is None or not all(isinstance(t, str) or (isinstance(t, int) and not isinstance(t, bool)) for t in tags):
        return _found(value, "a list of tags (str, or int ids with ClassLabel names)")
    return None


def expect_answers(value: Any) -> str | None:
    if not isinstance(value, dict) or "text" not in value or "answer_start" not in value:
        return _found(value, 'answers as {"text": [...], "answer_start": [...]}')
    texts, starts = _as_list(value["text"]), _as_list(value["answer_start"])
    if texts is None or starts is None or len(texts) != len(starts) or not texts:
        return _found(value, "as many answer texts as answer starts, at least one")
    if not all(isinstance(t, str) for t in texts) or not all(isinstance(s, int) and s >= 0 for s in starts):
        return _found(value, "answer texts (str) and answer_start character offsets (int >= 0)")
    return None


def _as_list(value: Any) -> list | None:
    """Lists, tuples and numpy arrays (what pandas and Arrow hand back) as a list; None otherwise."""
    if isinstance(value, (list, tuple)):
        return list(value)
    tolist = getattr(value, "tolist", None)
    if callable(tolist) and not isinstance(value, (str, bytes)):
        converted = tolist()
        return converted if isinstance(converted, list) else None
    return None


def as_list(value: Any) -> list:
    converted = _as_list(value)
    if converted is None:
        raise TypeError(f"expected a list, got {type(value).__name__}")
    return converted


def _found(value: Any, expected: str) -> str:
    import math

    missing = value is None or (isinstance(value, float) and math.isnan(value))
    found = "a missing value (None/NaN)" if missing else f"{value!r:.80} of type {type(value).__name__}"
    return f"holds {found}; expected {expected}"


def distinct_ids(values: Sequence[Any]) -> tuple[tuple[str, ...], list[int]]:
    """(names, one id per value): the sorted distinct values name the ids, numbers sorted
    numerically and anything else as text, so that ids never depend on the order of rows."""
    import numbers

    numeric = all(isinstance(v, numbers.Real) and not isinstance(v, bool) for v in values)
    keys = list(values) if numeric else [str(v) for v in values]
    distinct = sorted(set(keys))
    index = {value: position for position, value in enumerate(distinct)}
    return tuple(str(v) for v in distinct), [index[key] for key in keys]
