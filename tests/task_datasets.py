"""Tiny datasets of every task kind, built in code from the test vocabulary (never downloaded).

Each is learnable by a tiny model in a few steps: pairs are "same topic or not", scores are
5 for the same topic and 0 otherwise, tags mark topic words, and answers are the first topic
word of a context.
"""

from __future__ import annotations

import random
from pathlib import Path

from tests.conftest import FILLER, TOPICS, make_texts

#: Task section keys (besides ``dataset``) of each kind's tiny dataset.
TASK_KEYS = {
    "classification": {"text_pair_column": "text_pair"},
    "regression": {"kind": "regression", "text_pair_column": "text_pair", "label_column": "score"},
    "token_classification": {"kind": "token_classification"},
    "question_answering": {"kind": "question_answering", "doc_stride": 4},
}
FILES = {"classification": "pairs.csv", "regression": "scores.csv", "token_classification": "tags.jsonl",
         "question_answering": "answers.jsonl"}


def _rows():
    rows = make_texts()
    return rows, rows[7:] + rows[:7]


def pair_rows() -> list[dict]:
    first, second = _rows()
    return [{"text": a, "text_pair": b, "label": "same" if la == lb else "other"}
            for (a, la), (b, lb) in zip(first, second)]


def score_rows() -> list[dict]:
    first, second = _rows()
    return [{"text": a, "text_pair": b, "score": 5.0 if la == lb else 0.0} for (a, la), (b, lb) in zip(first, second)]


def tag_rows() -> list[dict]:
    return [{"tokens": text.split(), "tags": [f"B-{label.upper()}" if word in TOPICS[label] else "O"
                                              for word in text.split()]} for text, label in make_texts()]


def answer_rows(seed: int = 0) -> list[dict]:
    rng = random.Random(seed)
    rows = []
    for index, (text, label) in enumerate(make_texts()):
        words = text.split()
        answer = next(word for word in words if word in TOPICS[label])
        context = " ".join(words + rng.choices(FILLER, k=6))
        rows.append({"id": str(index), "question": f"which {label} word", "context": context,
                     "answers": {"text": [answer], "answer_start": [context.index(answer)]}})
    return rows


def write_dataset(kind: str, directory: Path) -> Path:
    import pandas as pd

    rows = {"classification": pair_rows, "regression": score_rows, "token_classification": tag_rows,
            "question_answering": answer_rows}[kind]()
    path = directory / FILES[kind]
    if path.suffix == ".csv":
        pd.DataFrame(rows).to_csv(path, index=False)
    else:
        pd.DataFrame(rows).to_json(path, orient="records", lines=True)
    return path
