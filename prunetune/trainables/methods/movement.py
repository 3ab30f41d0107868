"""Block movement pruning, "hybrid" (Lagunas et al. 2021): learned block scores, straight-through."""

from __future__ import annotations

from pydantic import Field

from prunetune.trainables.methods._base import BlockMethod, Options


class MovementOptions(Options):
    score_learning_rate: float = Field(1e-2, gt=0, lt=10, description="learning rate of the mask scores "
                                       "(nn_pruning: 1e-2 against 3e-5 for the weights)")


class Movement(BlockMethod):
    name = "movement"
    summary = "block movement pruning: learned scores per attention block and FFN neuron (straight-through)"
    options = MovementOptions
    moved_keys = {"score_learning_rate": "movement.score_learning_rate"}

    def mask_learning_rate(self, trial) -> float:
        return trial.movement.score_learning_rate

    def scorer(self, context):
        from prunetune.trainables.methods._block import MovementScorer

        return lambda views: MovementScorer(views, context.settings.block_size)
