"""Magnitude block pruning: the same blocks and schedule as movement, ranked by block L2 norm."""

from __future__ import annotations

from prunetune.trainables.methods._base import BlockMethod


class Magnitude(BlockMethod):
    name = "magnitude"
    summary = "magnitude block pruning: the baseline, blocks ranked by their L2 norm"

    def scorer(self, context):
        from prunetune.trainables.methods._block import MagnitudeScorer

        return lambda views: MagnitudeScorer(context.settings.block_size)
