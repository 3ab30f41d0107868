"""Task kinds: one small class per kind, and a registry by name (``task.kind``).

A kind declares the columns it reads, its head (``AutoModelFor...``), its encoding, its
distillation loss and its metrics (:mod:`._base`). To add one, write its module, add an
instance to :data:`TASKS` and its metrics to ``prunetune.metrics.TASK_METRICS``; the
contract test (``tests/trainables/test_tasks_contract.py``) then runs it on every family.

Importing this package does not import torch.
"""

from __future__ import annotations

from prunetune.trainables.tasks._base import IGNORED, Encoded, TaskKind
from prunetune.trainables.tasks.classification import Classification
from prunetune.trainables.tasks.question_answering import QuestionAnswering
from prunetune.trainables.tasks.regression import Regression
from prunetune.trainables.tasks.token_classification import TokenClassification

#: Registry: kind name -> the kind. One line per kind.
TASKS: dict[str, TaskKind] = {kind.name: kind for kind in (Classification(), Regression(), TokenClassification(),
                                                           QuestionAnswering())}

__all__ = ["IGNORED", "TASKS", "Encoded", "TaskKind"]
