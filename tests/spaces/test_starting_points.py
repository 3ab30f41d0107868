"""Published configurations enter every search, fitted to the space."""

from __future__ import annotations

from prunetune.spaces import KNOWN_GOOD, Dimension, starting_points


def dims(**specs):
    return {f"trial.{key}": Dimension.model_validate(spec) for key, spec in specs.items()}


def test_known_good_points_fit_the_space():
    space = dims(sparsity={"uniform": [0.0, 0.9]}, block_size={"choice": [16, 32]},
                 precision={"choice": ["fp32", "bf16"]})
    points = starting_points(space, {"trial.precision": "fp32", "trial.block_size": 32})
    assert {p["trial.sparsity"] for p in points} == {0.25, 0.5, 0.65}
    assert all(p["trial.block_size"] == 32 and p["trial.precision"] == "fp32" for p in points)  # fp16 not offered
    assert len(points) == len(KNOWN_GOOD)


def test_values_outside_the_space_fall_back_and_duplicates_go():
    space = dims(sparsity={"uniform": [0.6, 0.9]}, block_size={"choice": [4, 8]})
    points = starting_points(space, {"trial.sparsity": 0.7, "trial.block_size": 8})
    assert points == [{"trial.sparsity": 0.7, "trial.block_size": 8}, {"trial.sparsity": 0.65, "trial.block_size": 8}]


def test_user_points_come_first_and_are_never_cut():
    space = dims(sparsity={"choice": [0.25, 0.5, 0.75]})
    extra = [{"trial.sparsity": s} for s in (0.75, 0.5, 0.25)]
    points = starting_points(space, {}, extra=extra, limit=1)
    assert [p["trial.sparsity"] for p in points] == [0.75, 0.5, 0.25]


def test_no_searched_dimension_no_points():
    assert starting_points(dims(method={"fixed": "movement"}), {}) == []
