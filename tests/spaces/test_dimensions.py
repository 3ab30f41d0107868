"""Dimensions: the short YAML form in and out, bounds, and their Optuna distributions."""

from __future__ import annotations

import pytest
from optuna.distributions import (
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)
from pydantic import ValidationError

from prunetune.spaces import Dimension


@pytest.mark.parametrize(
    "spec",
    [
        {"uniform": [0.0, 0.9]},
        {"uniform": [0.0, 0.9], "step": 0.1},
        {"loguniform": [1.0, 16.0]},
        {"int": [100, 400], "step": 50},
        {"int": [1, 64], "log": True},
        {"choice": [16, 32, 64]},
        {"choice": ["fp32", "bf16"]},
        {"fixed": "movement"},
    ],
)
def test_short_form_round_trips(spec):
    assert Dimension.model_validate(spec).model_dump() == spec


@pytest.mark.parametrize(
    "spec, message",
    [
        ({"uniform": [0.9, 0.1]}, "low < high"),
        ({"loguniform": [0.0, 1.0]}, "low must be > 0"),
        ({"int": [1.5, 4]}, "must be an integer"),
        ({"choice": []}, "at least one value"),
        ({"choice": [16, 16]}, "distinct"),
        ({"uniform": [0, 1], "choice": [1]}, "exactly one of"),
        ({"between": [0, 1]}, "exactly one of"),
        ({"uniform": 0.5}, "expected [low, high]"),
        ({"fixed": 1, "step": 1}, "apply to uniform and int only"),
        ("0.5", "expected a mapping"),
    ],
)
def test_malformed_dimensions_say_why(spec, message):
    with pytest.raises(ValidationError, match=message.replace("[", r"\[").replace("]", r"\]")):
        Dimension.model_validate(spec)


def test_optuna_distributions():
    assert Dimension.model_validate({"uniform": [0.0, 0.9]}).to_optuna() == FloatDistribution(0.0, 0.9)
    assert Dimension.model_validate({"loguniform": [1, 16]}).to_optuna() == FloatDistribution(1.0, 16.0, log=True)
    assert Dimension.model_validate({"int": [2, 8], "step": 2}).to_optuna() == IntDistribution(2, 8, step=2)
    assert Dimension.model_validate({"choice": [16, 32]}).to_optuna() == CategoricalDistribution([16, 32])
    with pytest.raises(ValueError):
        Dimension.model_validate({"fixed": 3}).to_optuna()


def test_contains_keeps_booleans_apart_from_numbers():
    choice = Dimension.model_validate({"choice": [1, 2]})
    assert choice.contains(1) and choice.contains(1.0) and not choice.contains(True)
    uniform = Dimension.model_validate({"uniform": [0.0, 0.5]})
    assert uniform.contains(0.5) and not uniform.contains(0.51) and not uniform.contains("0.3")


def test_extremes_values_and_defaults():
    assert Dimension.model_validate({"int": [1, 4]}).values() == [1, 2, 3, 4]
    assert Dimension.model_validate({"uniform": [0, 1]}).values() is None
    assert Dimension.model_validate({"loguniform": [1, 16]}).default() == pytest.approx(4.0)
    assert Dimension.model_validate({"int": [100, 400]}).extremes() == [100, 400]
