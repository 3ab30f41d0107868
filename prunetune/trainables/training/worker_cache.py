"""What a worker process keeps between the trials it runs.

A search runs its trials in worker processes that Ray reuses (``search.reuse_actors``, on
by default): the second trial on a worker finds the process started, torch imported, and
here, everything a trial needs that does not depend on its configuration: the task's data
as read and split, the prepared teacher (its cache entry and per-example scores), the
fine-tuned teacher's weights and tokenizer, and its outputs on the training split. A trial
gets its own copy of whatever it changes (the student it prunes, the dense teacher it
moves and times); what it only reads is shared.

Entries are keyed by what they are made from (the task section, the teacher's cache
entry), so a worker that runs trials of two searches, or of a space that changes the
data, never hands one trial another's; the oldest entries go beyond a small bound.
"""

from __future__ import annotations

import copy
import json
from collections import OrderedDict
from pathlib import Path
from typing import Any, Callable, Hashable, TypeVar

T = TypeVar("T")

#: Entries kept per process: a few teachers and data sets, never a search's worth.
MAX_ENTRIES = 12

_entries: OrderedDict[Hashable, Any] = OrderedDict()
_hits = {"hits": 0, "misses": 0}


def remembered(key: Hashable, build: Callable[[], T]) -> T:
    """The value made by ``build`` for ``key``: made once in this process, then returned as it is."""
    if key in _entries:
        _entries.move_to_end(key)
        _hits["hits"] += 1
        return _entries[key]
    _hits["misses"] += 1
    value = build()
    _entries[key] = value
    while len(_entries) > MAX_ENTRIES:
        _entries.popitem(last=False)
    return value


def clear() -> None:
    """Forget everything (tests; a process that must read a changed file again)."""
    _entries.clear()
    _hits.update(hits=0, misses=0)


def counts() -> dict[str, int]:
    """How often a trial in this process found what it needed here (``hits``) or made it (``misses``)."""
    return dict(_hits)


def stamp(path: str | Path) -> tuple[int, int] | None:
    """When and how large ``path`` was last written (None: not a local file): a file rewritten
    in place under the same name makes a new key."""
    try:
        status = Path(path).stat()
    except (OSError, ValueError):
        return None
    return status.st_mtime_ns, status.st_size


def section_key(section: Any) -> str:
    """A configuration section (a pydantic model) as a key: its values, in a stable order."""
    return json.dumps(section.model_dump(mode="json"), sort_keys=True)


# --------------------------------------------------------------------------- the trial's uses


def task_data(task) -> Any:
    """The task's data as ``load_task_data`` reads, splits and checks it, once per task section."""
    from prunetune.trainables.training.data import load_task_data

    return remembered(("task_data", section_key(task), stamp(task.dataset)), lambda: load_task_data(task))


def teacher(config, data, *, progress: bool = False) -> Any:
    """The prepared teacher (fine-tuned and scored once per cache entry; read once per process)."""
    from prunetune.trainables.training.teacher import BASELINE_FILE, cache_root, prepare_teacher, teacher_key

    root = cache_root(config) / teacher_key(config, data)
    prepared = None
    if stamp(root / BASELINE_FILE) is None:  # not fine-tuned yet: this trial (or a neighbour) does it now
        prepared = prepare_teacher(config, data=data, progress=progress)
    # The baseline file is written last by a fine-tuning: a cache entry removed or redone is read again.
    key = ("teacher", str(root), stamp(root / BASELINE_FILE), config.task.eval_split, section_key(config.task))
    return remembered(key, lambda: prepared or prepare_teacher(config, data=data, progress=progress))


def pretrained_copy(model_dir: str, data) -> tuple[Any, Any]:
    """The tokenizer (shared) and a copy of the model (the caller's own) of a fine-tuned teacher directory."""
    from prunetune.trainables.training.teacher import load_pretrained

    weights = sorted(Path(model_dir).glob("*.safetensors")) + sorted(Path(model_dir).glob("*.bin"))
    key = ("pretrained", str(model_dir), tuple(stamp(w) for w in weights), data.kind, tuple(data.label_names or ()))
    tokenizer, model = remembered(key, lambda: load_pretrained(model_dir, data))
    return tokenizer, copy.deepcopy(model)


def train_logits(artifacts) -> Any:
    """The teacher's cached outputs on the training split (a copy: a method may adjust its targets)."""
    from prunetune.trainables.training.teacher import LOGITS_FILE

    key = ("train_logits", str(artifacts.root), stamp(artifacts.root / LOGITS_FILE))
    logits = remembered(key, artifacts.train_logits)
    return logits.clone() if hasattr(logits, "clone") else copy.deepcopy(logits)
