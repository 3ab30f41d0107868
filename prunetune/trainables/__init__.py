"""One trial: data, teacher, pruning, distillation, precision, compaction and measurement.

Public names are imported lazily so that ``import prunetune.trainables`` stays cheap.
"""

from __future__ import annotations

from importlib import import_module

_PUBLIC = {
    "run_trial": "prunetune.trainables.trial",
    "Reporter": "prunetune.trainables.trial",
    "prepare_teacher": "prunetune.trainables.teacher",
    "TeacherArtifacts": "prunetune.trainables.teacher",
    "load_task_data": "prunetune.trainables.data",
    "TaskData": "prunetune.trainables.data",
    "compact": "prunetune.trainables.compaction",
    "load_compacted": "prunetune.trainables.compaction",
    "save_compacted": "prunetune.trainables.compaction",
    "PrunedBertConfig": "prunetune.trainables.pruned_bert",
    "PrunedBertForSequenceClassification": "prunetune.trainables.pruned_bert",
}

__all__ = sorted(_PUBLIC)


def __getattr__(name: str):
    if name in _PUBLIC:
        return getattr(import_module(_PUBLIC[name]), name)
    raise AttributeError(f"module 'prunetune.trainables' has no attribute {name!r}")
