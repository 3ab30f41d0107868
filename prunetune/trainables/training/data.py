"""The task's text data: read a dataset, encode its labels, split it, check it.

Three kinds of source, one result (:class:`TaskData`):

- the built-in ``bbc_news`` corpus, read file by file in sorted order so that label ids
  and example order never depend on the file system;
- a ``.csv``, ``.json`` (a list of records, or JSON lines), ``.jsonl`` or ``.parquet``
  file, optionally with a ``split`` column (train/validation/test);
- a directory written by ``datasets``' ``save_to_disk``;
- any other string: a Hugging Face dataset id (needs a network or the local HF cache).

Which columns are read, and what their values must be, is the task kind's
(``prunetune.trainables.tasks``): a text and a label, a sentence pair, words and their tags,
or a question, a context and its answers. Splits a source does not provide are carved out of
its training rows with the task's seed (stratified by label for classification); everything
is deterministic, and ``TaskData.fingerprint`` hashes the result so that caches (teacher, logits) can key on the data itself.
Every problem raises :class:`~prunetune.errors.DataError` naming the key and the value.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.model_selection import train_test_split

from prunetune.builtins import BUILTIN_DATASETS, builtin_dataset_dir
from prunetune.config import TaskConfig
from prunetune.errors import DataError
from prunetune.trainables.tasks import TASKS, TaskKind
from prunetune.trainables.tasks._base import Columns

SPLIT_NAMES: tuple[str, ...] = ("train", "validation", "test")
FILE_SUFFIXES: tuple[str, ...] = (".csv", ".json", ".jsonl", ".parquet")
SPLIT_COLUMN = "split"


@dataclass(frozen=True)
class Split:
    """One split's rows, as the task kind reads them.

    ``texts`` is the first input of each row (a text; the words of a sentence; a question),
    ``pairs`` the second where the kind has one (a sentence pair's second text; a question's
    context), ``labels`` the targets (class ids into ``TaskData.label_names``; scores; tag ids
    per word; answers as ``(texts, character starts)``).
    """

    texts: tuple[Any, ...]
    labels: tuple[Any, ...]
    pairs: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if len(self.texts) != len(self.labels):
            raise ValueError(f"Split: {len(self.texts)} texts but {len(self.labels)} labels")
        if self.pairs is not None and len(self.pairs) != len(self.texts):
            raise ValueError(f"Split: {len(self.texts)} texts but {len(self.pairs)} pairs")

    def __len__(self) -> int:
        return len(self.texts)


@dataclass(frozen=True)
class TaskData:
    train: Split
    validation: Split
    test: Split
    label_names: tuple[str, ...]  # id -> name
    fingerprint: str  # sha256 of the label names and every split's texts and labels
    kind: str = "classification"  # the task kind that read it (prunetune.trainables.tasks)

    def split(self, name: str) -> Split:
        if name not in SPLIT_NAMES:
            raise DataError(f"split {name!r}: expected one of {', '.join(SPLIT_NAMES)}")
        return getattr(self, name)

    @property
    def num_labels(self) -> int:
        return len(self.label_names)


@dataclass
class _Table:
    """What a source yields before targets are encoded and splits are made."""

    values: dict[str, list[Any]]  # config key (``text_column``, ...) -> one value per row
    splits: list[str] | None = None  # per row, where the source assigns splits
    class_names: dict[str, tuple[str, ...]] = field(default_factory=dict)  # ClassLabel names per config key

    def __len__(self) -> int:
        return len(next(iter(self.values.values())))


def load_task_data(task: TaskConfig) -> TaskData:
    """Read, encode, split and check the dataset named by ``task.dataset``, as ``task.kind`` reads it."""
    kind = TASKS[task.kind]
    table = _read_source(task, kind)
    targets, label_names = kind.targets(table.values, task, table.class_names)
    firsts, seconds = kind.split_parts(table.values, task)
    strata = targets if kind.stratified else None
    splits = _make_splits(len(table), strata, table.splits, label_names, task)
    splits = _subsample(splits, strata, task)
    _check_splits(splits, strata, label_names, task)
    built = {
        name: Split(
            texts=tuple(firsts[i] for i in rows),
            labels=tuple(targets[i] for i in rows),
            pairs=tuple(seconds[i] for i in rows) if seconds is not None else None,
        )
        for name, rows in splits.items()
    }
    return TaskData(**built, label_names=label_names, fingerprint=_fingerprint(built, label_names), kind=kind.name)


# --------------------------------------------------------------------------- sources


def _read_source(task: TaskConfig, kind: TaskKind) -> _Table:
    if task.dataset in BUILTIN_DATASETS:
        if kind.name != "classification":
            raise DataError(f"task.dataset = {task.dataset!r} is a built-in classification dataset (texts and "
                            f"topics); task.kind = {kind.name!r} needs a file or a Hugging Face dataset with "
                            f"{', '.join(f'task.{key}' for key in kind.columns(task).names)}")
        return _read_folder_per_label(builtin_dataset_dir(task.dataset), task)
    if Path(task.dataset).suffix.lower() in FILE_SUFFIXES:
        return _read_file(task, kind.columns(task))
    return _read_hf_dataset(task, kind)


def _read_folder_per_label(root: Path, task: TaskConfig) -> _Table:
    """One sub-folder per label of ``*.txt`` files, both in sorted order."""
    if not root.is_dir():
        raise DataError(f"task.dataset = {task.dataset!r}: folder {root} not found")
    texts, labels = [], []
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        for file in sorted(folder.glob("*.txt")):
            texts.append(_read_text_file(file))
            labels.append(folder.name)
    return _Table(values={"text_column": texts, "label_column": labels})


def _read_text_file(file: Path) -> str:
    data = file.read_bytes()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        # One BBC article (sports/199.txt) is Windows-1252 ("£" as 0xA3); decoding it
        # that way keeps its text instead of failing or inserting replacement marks.
        return data.decode("cp1252", errors="replace")


def _read_file(task: TaskConfig, columns: Columns) -> _Table:
    path = Path(task.dataset)
    if not path.is_file():
        raise DataError(f"task.dataset = {task.dataset!r}: file not found; expected an existing {'/'.join(FILE_SUFFIXES)} file")
    frame = _read_frame(path, task)
    for key, column in columns.names.items():
        if column not in frame.columns:
            raise DataError(
                f"task.{key} = {column!r}: no such column in {path.name}; "
                f"its columns are {', '.join(map(str, frame.columns))}"
            )
    values = {key: frame[column].tolist() for key, column in columns.names.items()}
    _check_values(values, columns, lambda row: f"row {row} of {path.name}")
    splits = _split_column(frame[SPLIT_COLUMN].tolist(), task) if SPLIT_COLUMN in frame.columns else None
    return _Table(values=values, splits=splits)


def _check_values(values: dict[str, list[Any]], columns: Columns, describe_row: Callable[[int], str]) -> None:
    """Every value of every column the kind reads is of the shape it needs, before any model loads."""
    for key, column_values in values.items():
        check = columns.checks.get(key)
        for row, value in enumerate(column_values if check else ()):
            problem = check(value)
            if problem:
                raise DataError(f"task.{key} = {columns.names[key]!r}: {describe_row(row)} {problem}")


def _read_frame(path: Path, task: TaskConfig):
    import pandas as pd

    suffix = path.suffix.lower()
    try:
        if suffix == ".csv":
            # Texts stay text even when a cell looks like a number.
            texts = (task.text_column, task.text_pair_column, task.question_column, task.context_column)
            return pd.read_csv(path, dtype={column: str for column in texts if column})
        if suffix == ".parquet":
            return pd.read_parquet(path)
        # json/jsonl are parsed with the standard library so that pandas' type and date
        # guessing cannot turn a text into a number or a timestamp.
        return pd.DataFrame.from_records(_json_records(path))
    except DataError:
        raise
    except Exception as exc:  # pandas/pyarrow raise many types for unreadable files
        raise DataError(f"task.dataset = {task.dataset!r}: cannot read {suffix} file: {exc}") from exc


def _json_records(path: Path) -> list[dict]:
    """A JSON list of records, or JSON lines (one record per non-empty line)."""
    content = path.read_text(encoding="utf-8")
    if content.lstrip().startswith("["):
        records = json.loads(content)
    else:
        records = []
        for number, line in enumerate(content.splitlines(), start=1):
            if line.strip():
                try:
                    records.append(json.loads(line))
                except json.JSONDecodeError as exc:
                    raise DataError(f"task.dataset = {str(path)!r}: line {number} is not JSON: {exc}") from exc
    bad = next((r for r in records if not isinstance(r, dict)), None)
    if bad is not None:
        raise DataError(
            f"task.dataset = {str(path)!r}: expected a list of records (objects) or JSON lines, "
            f"found a {type(bad).__name__}: {bad!r:.80}"
        )
    return records


def _split_column(values: list[Any], task: TaskConfig) -> list[str]:
    unexpected = sorted({repr(v) for v in values if v not in SPLIT_NAMES})
    if unexpected:
        raise DataError(
            f"task.dataset = {task.dataset!r}: column {SPLIT_COLUMN!r} holds {', '.join(unexpected)}; "
            f"expected only {', '.join(SPLIT_NAMES)}"
        )
    return list(values)


def _read_hf_dataset(task: TaskConfig, kind: TaskKind) -> _Table:
    """A Hugging Face dataset: its train/validation/test splits, other splits ignored."""
    dataset_dict = _load_hf(task)
    if "train" not in dataset_dict:
        raise DataError(
            f"task.dataset = {task.dataset!r}: no 'train' split; it has {', '.join(dataset_dict)}"
        )
    columns = kind.columns(task)
    table = _Table(values={key: [] for key in columns.names}, splits=[])
    for name in SPLIT_NAMES:
        if name not in dataset_dict:
            continue
        part = dataset_dict[name]
        _require_hf_columns(part, name, task, columns)
        values = {key: list(part[column]) for key, column in columns.names.items()}
        if name != "train" and _hidden_labels(values):
            continue  # a hidden-label test set (GLUE style): carve this split instead
        _check_values(values, columns, lambda row, name=name: f"split {name!r} row {row}")
        for key in columns.names:
            table.values[key] += values[key]
        table.splits += [name] * len(part)
    table.class_names = {key: names for key, column in columns.names.items()
                         if (names := _class_label_names(dataset_dict["train"], column)) is not None}
    return table


def _hidden_labels(values: dict[str, list[Any]]) -> bool:
    labels = values.get("label_column")
    return bool(labels) and all(label == -1 for label in labels)


def _load_hf(task: TaskConfig):
    try:
        import datasets

        if (Path(task.dataset) / "dataset_dict.json").is_file():  # written by DatasetDict.save_to_disk
            loaded = datasets.load_from_disk(task.dataset)
        else:
            loaded = datasets.load_dataset(task.dataset, task.hf_config)
    except Exception as exc:  # network, cache, unknown id, bad config name, ...
        raise DataError(
            f"task.dataset = {task.dataset!r} is not a built-in name ({', '.join(BUILTIN_DATASETS)}), "
            f"nor a {'/'.join(FILE_SUFFIXES)} file, nor a loadable Hugging Face dataset "
            f"(hf_config = {task.hf_config!r}): {exc}"
        ) from exc
    if not hasattr(loaded, "keys"):
        raise DataError(f"task.dataset = {task.dataset!r}: expected a dataset with named splits")
    return loaded


def _require_hf_columns(part, split_name: str, task: TaskConfig, columns: Columns) -> None:
    for key, column in columns.names.items():
        if column not in part.column_names:
            raise DataError(
                f"task.{key} = {column!r}: no such column in split {split_name!r} of "
                f"{task.dataset!r}; its columns are {', '.join(part.column_names)}"
            )


def _class_label_names(part, column: str) -> tuple[str, ...] | None:
    """The ClassLabel names of a column, or of the items of a list column (CoNLL's ner_tags)."""
    feature = part.features.get(column)
    names = getattr(feature, "names", None) or getattr(getattr(feature, "feature", None), "names", None)
    return tuple(names) if names else None


# --------------------------------------------------------------------------- splits


def _make_splits(
    count: int, label_ids: list[int] | None, given: list[str] | None, names: tuple[str, ...], task: TaskConfig
) -> dict[str, list[int]]:
    """Row indices of each split: given ones kept, missing ones carved out of train (stratified
    by ``label_ids`` unless they are None)."""
    rows = {name: [] for name in SPLIT_NAMES}
    if given is None:
        rows["train"] = list(range(count))
    else:
        for row, name in enumerate(given):
            rows[name].append(row)
    missing = [name for name in ("test", "validation") if not rows[name]]
    if missing and rows["train"]:
        rows.update(_carve(rows["train"], label_ids, missing, names, task))
    return rows


def _carve(
    pool: list[int], label_ids: list[int] | None, targets: list[str], names: tuple[str, ...], task: TaskConfig
) -> dict[str, list[int]]:
    """Seeded, stratified when there are labels: each target split gets its fraction of the whole pool."""
    if label_ids is not None:
        _require_class_sizes(pool, label_ids, targets, names, task)
    sizes = {name: math.ceil(_fraction(name, task) * len(pool)) for name in targets}
    carved, rest = {}, pool
    for name in targets:
        try:
            rest, carved[name] = train_test_split(
                rest,
                test_size=sizes[name],
                stratify=[label_ids[i] for i in rest] if label_ids is not None else None,
                random_state=task.seed,
            )
        except ValueError as exc:  # e.g. fewer rows for a split than there are classes
            raise DataError(
                f"task.{name}_fraction = {_fraction(name, task)}: cannot carve {sizes[name]} "
                f"{name} rows out of {len(rest)}, stratified by task.label_column = "
                f"{task.label_column!r}: {exc}"
            ) from exc
    return {"train": list(rest), **{name: list(rows) for name, rows in carved.items()}}


def _fraction(split_name: str, task: TaskConfig) -> float:
    return task.test_fraction if split_name == "test" else task.validation_fraction


def _require_class_sizes(
    pool: list[int], label_ids: list[int], targets: list[str], names: tuple[str, ...], task: TaskConfig
) -> None:
    # A class must reach train and every carved split: one example per destination.
    needed = len(targets) + 1
    counts = Counter(label_ids[i] for i in pool)
    small = sorted((count, label) for label, count in counts.items() if count < needed)
    if small:
        count, label = small[0]
        raise DataError(
            f"task.label_column = {task.label_column!r}: class {names[label]!r} has only {count} "
            f"example(s) to split from; a stratified split into train, {' and '.join(targets)} needs "
            f"at least {needed} per class"
        )


def _subsample(splits: dict[str, list[int]], label_ids: list[int] | None, task: TaskConfig) -> dict[str, list[int]]:
    limits = {"train": task.max_train_samples, "validation": task.max_eval_samples, "test": task.max_eval_samples}
    return {
        name: _stratified_take(rows, label_ids, limits[name], task.seed)
        if limits[name] is not None and len(rows) > limits[name]
        else rows
        for name, rows in splits.items()
    }


def _stratified_take(rows: list[int], label_ids: list[int] | None, n: int, seed: int) -> list[int]:
    """``n`` of ``rows`` with the class proportions kept, in their original order.

    Written out rather than with train_test_split, which refuses when the rows left
    over are fewer than the classes (e.g. 99 of 100): a subsample has no such need.
    """
    by_class: dict[int, list[int]] = {}
    for row in rows:  # without labels (regression, tagging, QA), one class: a seeded random take
        by_class.setdefault(label_ids[row] if label_ids is not None else 0, []).append(row)
    classes = sorted(by_class)
    quotas = _proportional_quotas([len(by_class[c]) for c in classes], n)
    rng = np.random.default_rng(seed)
    chosen = set()
    for label, quota in zip(classes, quotas):
        chosen.update(rng.choice(by_class[label], size=quota, replace=False).tolist())
    return [row for row in rows if row in chosen]


def _proportional_quotas(counts: list[int], n: int) -> list[int]:
    """Sizes summing to ``n``, proportional to ``counts`` (largest remainder), with one
    per class first when ``n`` allows, so that a subsample never loses a class."""
    floor = [1] * len(counts) if n >= len(counts) else [0] * len(counts)
    spare = [count - f for count, f in zip(counts, floor)]
    rest, total = n - sum(floor), sum(spare)
    shares = [divmod(rest * s, total) if total else (0, 0) for s in spare]
    quotas = [f + whole for f, (whole, _) in zip(floor, shares)]
    by_remainder = sorted(range(len(counts)), key=lambda i: (-shares[i][1], i))
    for i in by_remainder[: n - sum(quotas)]:
        quotas[i] += 1
    return quotas


def _check_splits(
    splits: dict[str, list[int]], label_ids: list[int] | None, names: tuple[str, ...], task: TaskConfig
) -> None:
    sizes = ", ".join(f"{name} {len(rows)}" for name, rows in splits.items())
    empty = [name for name, rows in splits.items() if not rows]
    if empty:
        raise DataError(
            f"task.dataset = {task.dataset!r}: split {' and '.join(map(repr, empty))} is empty "
            f"(sizes: {sizes}); a {SPLIT_COLUMN!r} column needs 'train' rows, and every split needs some"
        )
    if label_ids is None:
        return
    seen = {label_ids[i] for i in splits["train"]}
    for name in ("validation", "test"):
        unseen = sorted({label_ids[i] for i in splits[name]} - seen)
        if unseen:
            hint = " (task.max_train_samples may be too small)" if task.max_train_samples else ""
            raise DataError(
                f"task.label_column = {task.label_column!r}: {name} has label(s) "
                f"{', '.join(repr(names[i]) for i in unseen)} that train never has{hint}"
            )


def _fingerprint(splits: dict[str, Split], label_names: tuple[str, ...]) -> str:
    digest = hashlib.sha256()
    digest.update(json.dumps(list(label_names)).encode())
    for name in SPLIT_NAMES:
        split = splits[name]
        # JSON encoding delimits every text, so no two different datasets hash alike.
        parts = [name, split.texts, split.labels] + ([split.pairs] if split.pairs is not None else [])
        digest.update(json.dumps(parts, ensure_ascii=False).encode())
    return digest.hexdigest()
