"""Test-time pruning and distillation without training labels (after TT-MPD, Wu et al. 2024).

The training labels are never read: the teacher's cached logits on a sample of the
training texts are the pseudo-labels, a held-out slice of them ranks candidates (heads and
FFN groups) by estimated agreement kept per millisecond saved, and structure is removed
in rounds during the pruning ramp. See ``_test_time.py`` for the proxies.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from prunetune.trainables.methods._base import Method, Options

#: Extra metric: the part of train_seconds spent ranking, removing and compacting.
PRUNE_SECONDS = "prune_seconds"


class TestTimeOptions(Options):
    pseudo_label_samples: int = Field(256, ge=8, description="unlabelled samples labelled once by the teacher")
    ranking_samples: int = Field(32, ge=4, description="held-out slice of those samples that ranks candidates")
    prune_rounds: int = Field(3, ge=1, le=100, description="rank-prune-compact rounds during the pruning ramp")
    ffn_group_size: int = Field(64, ge=1, description="FFN neurons removed together as one candidate")
    ranking_proxy: Literal["taylor", "masked"] = Field(
        "taylor", description="first-order gate estimate, or masking each candidate")

    @model_validator(mode="after")
    def _ranking_slice_fits(self) -> "TestTimeOptions":
        if self.ranking_samples >= self.pseudo_label_samples:
            raise ValueError(
                "trial.test_time.ranking_samples must be < trial.test_time.pseudo_label_samples (the rest are "
                f"distilled on), got {self.ranking_samples} >= {self.pseudo_label_samples}")
        return self


class TestTime(Method):
    __test__ = False  # not a pytest test class, despite its name

    name = "test_time"
    summary = "test-time pruning: whole heads and FFN groups ranked on teacher pseudo-labels, no training labels"
    options = TestTimeOptions
    metrics = {PRUNE_SECONDS: "seconds of ranking, removal and compaction inside train_seconds"}
    moved_keys = {key: f"test_time.{key}" for key in TestTimeOptions.model_fields}

    def model_problems(self, trial, dims) -> list[str]:
        size = trial.test_time.ffn_group_size
        if dims.intermediate_size % size:
            divisors = [d for d in (8, 16, 32, 64, 128, 256) if dims.intermediate_size % d == 0]
            return [f"trial.test_time.ffn_group_size = {size}: must divide the FFN width of {dims.describe()}; "
                    f"for example {divisors}"]
        return []

    def training_set(self, context):
        from prunetune.trainables.methods._test_time import pseudo_labelled_samples

        return pseudo_labelled_samples(context)[0]

    def build(self, context):
        from prunetune.trainables.methods._test_time import build_pruner

        return build_pruner(context)
