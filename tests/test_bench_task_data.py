"""The four derived BBC News task files have the promised columns, labels and determinism."""

from __future__ import annotations

import csv
import importlib.util
import json
import sys
from collections import Counter
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
N = 60


def load_task_data():
    """``bench`` has no ``__init__.py``, so the module is loaded from its path."""
    name = "bench_task_data"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, ROOT / "bench" / "task_data.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


task_data = load_task_data()


def read_csv(path: Path) -> tuple[list[str], list[dict]]:
    with path.open(encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle)
        return list(reader.fieldnames), list(reader)


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """Each dataset at seed 0 twice and at seed 1, small enough to build in a blink."""
    out = tmp_path_factory.mktemp("task_data")
    makers = {
        "pairs.csv": lambda p, s: task_data.pairs_csv(p, seed=s, max_pairs=N),
        "regression.csv": lambda p, s: task_data.regression_csv(p, seed=s, max_pairs=N),
        "tagging.jsonl": lambda p, s: task_data.tagging_jsonl(p, seed=s, max_rows=N),
        "qa.jsonl": lambda p, s: task_data.qa_jsonl(p, seed=s, max_rows=N),
    }
    return {
        name: [make(out / f"{tag}-{name}", seed) for tag, seed in (("a", 0), ("b", 0), ("c", 1))]
        for name, make in makers.items()
    }


def test_pairs_columns_and_balanced_labels(built):
    columns, rows = read_csv(built["pairs.csv"][0])
    assert columns == ["text", "text_pair", "label"]
    assert len(rows) == N
    assert Counter(r["label"] for r in rows) == {"same": N // 2, "other": N // 2}
    assert all(r["text"] and r["text_pair"] for r in rows)


def test_regression_columns_and_scores(built):
    columns, rows = read_csv(built["regression.csv"][0])
    assert columns == ["text", "text_pair", "score"]
    assert len(rows) == N
    scores = Counter(float(r["score"]) for r in rows)
    assert set(scores) == {0.0, 2.5, 5.0}
    assert max(scores.values()) - min(scores.values()) <= 1


def test_tagging_rows_are_valid_iob2(built):
    rows = read_jsonl(built["tagging.jsonl"][0])
    assert len(rows) == N
    kinds = {"MONEY", "DATE", "PCT"}
    for row in rows:
        assert set(row) == {"tokens", "tags"}
        tokens, tags = row["tokens"], row["tags"]
        assert len(tokens) == len(tags) and 5 <= len(tokens) <= 60
        previous = "O"
        for tag in tags:
            assert tag == "O" or (tag[:2] in ("B-", "I-") and tag[2:] in kinds)
            if tag.startswith("I-"):
                assert previous in (f"B-{tag[2:]}", f"I-{tag[2:]}")
            previous = tag
    plain = sum(all(t == "O" for t in row["tags"]) for row in rows)
    assert 0 < plain < N // 2


def test_qa_answers_are_context_slices(built):
    rows = read_jsonl(built["qa.jsonl"][0])
    assert len(rows) == N
    for row in rows:
        assert set(row) == {"id", "question", "context", "answers"}
        assert isinstance(row["id"], str)
        (answer,), (start,) = row["answers"]["text"], row["answers"]["answer_start"]
        assert answer and row["context"][start : start + len(answer)] == answer
    assert len({row["id"] for row in rows}) == N


@pytest.mark.parametrize("name", ["pairs.csv", "regression.csv", "tagging.jsonl", "qa.jsonl"])
def test_seed_determines_the_file(built, name):
    first, again, other = (p.read_bytes() for p in built[name])
    assert first == again
    assert first != other


def test_tagging_rules_on_a_sentence():
    sentence = 'Profits rose 5% to £3.2 million on Friday, in March 2005 ("a record").'
    words = [t.text for t in task_data.tokenize(sentence)]
    tags = dict(zip(words, task_data.tag_words(words)))
    assert tags["5%"] == "B-PCT"
    assert (tags["£3.2"], tags["million"]) == ("B-MONEY", "I-MONEY")
    assert tags["Friday"] == "B-DATE"
    assert (tags["March"], tags["2005"]) == ("B-DATE", "I-DATE")
    assert '"' in words and "(" in words and "," in words
