"""prunetune: multi-objective search for fast, small, accurate transformer classifiers.

The command line's verbs are importable from here (see :mod:`prunetune.api`):
``load_config``, ``run_search``, ``resume_search``, ``run_trial``, ``report``, ``pick``,
``export``, and ``tune_trainable`` / ``tune_param_space`` / ``tune_scheduler`` for a
``ray.tune.Tuner`` of your own. They are imported on first use, so ``import prunetune`` stays light.
"""

from __future__ import annotations

from importlib import import_module

__version__ = "0.1.0"

_API = ("load_config", "run_search", "resume_search", "run_trial", "report", "pick", "export",
        "tune_trainable", "tune_param_space", "tune_scheduler")
_ROOT = {"Config": "prunetune.config", "PrunetuneError": "prunetune.errors", "ConfigError": "prunetune.errors"}

__all__ = [*_API, *_ROOT, "__version__"]


def __getattr__(name: str):
    if name in _API:
        return getattr(import_module("prunetune.api"), name)
    if name in _ROOT:
        return getattr(import_module(_ROOT[name]), name)
    raise AttributeError(f"module 'prunetune' has no attribute {name!r}")
