"""Block-structured pruning with reweighted group lasso (Li et al. 2020, arXiv 2009.08065).

Warm-up (dense), then a penalty phase (``p * sum_g gamma_g ||W_g||``, ``gamma_g`` recomputed
every ``reweight_every`` steps), then a hard prune to the target and retraining with the
mask fixed for ``trial.cooldown_fraction`` of the steps. See ``_group_lasso.py``.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field

from prunetune.trainables.methods._base import Method, Options, block_size_fits


class GroupLassoOptions(Options):
    penalty: float = Field(1e-4, ge=0, lt=1, description="weight p of the reweighted group penalty, per layer")
    reweight_every: int = Field(25, ge=1, description="steps between recomputations of the group weights "
                                "1/(|W_g| + eps)")
    block_rows: int | None = Field(None, ge=1, description="group extent along the head dimension "
                                   "(default: trial.block_size)")
    block_cols: int | None = Field(None, ge=1, description="group extent along the hidden dimension "
                                   "(default: trial.block_size)")


class GroupLasso(Method):
    name = "group_lasso"
    summary = "reweighted group lasso on attention tiles and FFN neurons, hard prune, retrain with the mask fixed"
    options = GroupLassoOptions
    moved_keys = {"group_lasso_penalty": "group_lasso.penalty", "reweight_every": "group_lasso.reweight_every",
                  "block_rows": "group_lasso.block_rows", "block_cols": "group_lasso.block_cols"}

    @staticmethod
    def group_shape(trial: Any) -> tuple[int, int]:
        options = trial.group_lasso
        return options.block_rows or trial.block_size, options.block_cols or trial.block_size

    def model_problems(self, trial: Any, dims) -> list[str]:
        rows, cols = self.group_shape(trial)
        problems = []
        if not block_size_fits(rows, dims):  # along the head dimension a tile is a block: same rule
            problems.append(f"trial.group_lasso.block_rows = {rows}: must divide the hidden size and either divide "
                            f"the head size or be a multiple of it, for {dims.describe()}")
        if dims.hidden_size % cols:
            problems.append(f"trial.group_lasso.block_cols = {cols}: must divide the hidden size, for {dims.describe()}")
        return problems

    def build(self, context):
        from prunetune.trainables.methods._group_lasso import GroupLassoPruner

        s = context.settings
        rows, cols = self.group_shape(s)
        return GroupLassoPruner(context.student, context.family, block_rows=rows, block_cols=cols,
                                penalty=s.group_lasso.penalty, reweight_every=s.group_lasso.reweight_every,
                                min_head_density=s.min_head_density, final_sparsity=s.sparsity,
                                max_steps=s.max_steps, warmup_fraction=s.warmup_fraction,
                                cooldown_fraction=s.cooldown_fraction)
