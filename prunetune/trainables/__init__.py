"""One trial, wired from parts: methods, encoder families, training and measurement.

- ``methods/``: one module per compression method and the registry (``METHODS``);
- ``families/``: one description of an encoder layer per model family (``FAMILIES``),
  compaction, and the compacted models' classes, save and load;
- ``training/``: data, the teacher, distillation, precision, the optimiser step, filling;
- ``measure/``: latency and the per-layer latency table, runtimes, quality, energy and size;
- ``trial.py`` drives them (``run_trial``); ``trainable.py`` wraps it for Ray Tune.

Public names are imported lazily so that ``import prunetune.trainables`` stays cheap.
"""

from __future__ import annotations

from importlib import import_module

_PUBLIC = {
    "run_trial": "prunetune.trainables.trial",
    "Reporter": "prunetune.trainables.trial",
    "make_trainable": "prunetune.trainables.trainable",
    "prepare_teacher": "prunetune.trainables.training.teacher",
    "TeacherArtifacts": "prunetune.trainables.training.teacher",
    "load_task_data": "prunetune.trainables.training.data",
    "TaskData": "prunetune.trainables.training.data",
    "compact": "prunetune.trainables.families.compaction",
    "compact_and_verify": "prunetune.trainables.families.compaction",
    "load_compacted": "prunetune.trainables.families.compaction",
    "save_compacted": "prunetune.trainables.families.compaction",
    "register_auto_classes": "prunetune.trainables.families.compaction",
    "FAMILIES": "prunetune.trainables.families",
    "METHODS": "prunetune.trainables.methods",
}

__all__ = sorted(_PUBLIC)


def __getattr__(name: str):
    if name in _PUBLIC:
        return getattr(import_module(_PUBLIC[name]), name)
    raise AttributeError(f"module 'prunetune.trainables' has no attribute {name!r}")
