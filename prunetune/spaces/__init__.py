"""Search spaces: dimensions, validation against the trial, starting points, built-in presets.

A ``space`` section maps dotted ``trial.*`` keys to dimensions::

    space:
      trial.sparsity: {uniform: [0.0, 0.95]}
      trial.block_size: {choice: [16, 32, 64]}
      trial.temperature: {loguniform: [1.0, 16.0]}
      trial.max_steps: {int: [100, 400], step: 50}
      trial.method: {fixed: movement}

The presets (YAML) live in ``presets/``; ``prunetune presets`` lists them. Importing this
package imports neither torch nor Optuna.
"""

from prunetune.spaces._dimensions import KINDS, Dimension
from prunetune.spaces._starting_points import (
    KNOWN_GOOD,
    StartingPoint,
    fit_point,
    starting_points,
)
from prunetune.spaces._validate import (
    config_space_problems,
    leaf_fields,
    offered_values,
    parse_space,
    searchable_keys,
    space_problems,
    starting_point_problems,
)

__all__ = [
    "KINDS",
    "KNOWN_GOOD",
    "Dimension",
    "StartingPoint",
    "config_space_problems",
    "fit_point",
    "leaf_fields",
    "offered_values",
    "parse_space",
    "searchable_keys",
    "space_problems",
    "starting_point_problems",
    "starting_points",
]
