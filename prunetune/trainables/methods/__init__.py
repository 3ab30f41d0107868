"""Compression methods: one small class per method, and a registry by name.

A method declares its options (nested under ``trial.<name>`` in the configuration), its
checks against the model (run when the configuration is validated, before any trial), the
extra metrics it reports, and builds the pruner a trial drives (mask parameters, a step
hook, a penalty, the finish, extra metrics, checkpoint state). To add one, write its
module and add an instance to :data:`METHODS`; the contract test runs it on every family.

Importing this package does not import torch: the pruners live in the ``_``-modules and
are imported when a trial builds one.
"""

from __future__ import annotations

from prunetune.trainables.methods._base import BlockMethod, Method, Options
from prunetune.trainables.methods.group_lasso import GroupLasso
from prunetune.trainables.methods.magnitude import Magnitude
from prunetune.trainables.methods.movement import Movement
from prunetune.trainables.methods.test_time import TestTime

#: Registry: method name -> the method. One line per method.
METHODS: dict[str, Method] = {method.name: method for method in (Movement(), Magnitude(), GroupLasso(), TestTime())}


def method_metrics() -> dict[str, str]:
    """Every extra metric key a method may report, with its meaning."""
    return {key: meaning for method in METHODS.values() for key, meaning in method.metrics.items()}


def moved_keys() -> dict[str, str]:
    """Old flat ``trial.*`` keys that moved under a method's section: old -> new (without ``trial.``)."""
    return {old: new for method in METHODS.values() for old, new in method.moved_keys.items()}


__all__ = ["METHODS", "BlockMethod", "Method", "Options", "method_metrics", "moved_keys"]
