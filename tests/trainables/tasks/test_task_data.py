"""Every task kind reads files and Hugging Face datasets (saved to disk with the features of GLUE
MNLI, CoNLL-2003 and SQuAD) through the same keys, and bad columns fail before any model loads."""

from __future__ import annotations

import pytest

from prunetune.config import TaskConfig
from prunetune.errors import DataError
from prunetune.trainables.training.data import load_task_data
from tests.task_datasets import TASK_KEYS, answer_rows, pair_rows, tag_rows, write_dataset

NER = ["O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC", "B-MISC", "I-MISC"]


def _mnli(directory):
    import datasets

    labels = datasets.ClassLabel(names=["entailment", "neutral", "contradiction"])
    features = datasets.Features({"premise": datasets.Value("string"), "hypothesis": datasets.Value("string"),
                                  "label": labels, "idx": datasets.Value("int32")})
    rows = pair_rows()

    def part(start, stop, hidden=False):
        chosen = rows[start:stop]
        return datasets.Dataset.from_dict({
            "premise": [r["text"] for r in chosen], "hypothesis": [r["text_pair"] for r in chosen],
            "label": [-1 if hidden else i % 3 for i, _ in enumerate(chosen)], "idx": list(range(len(chosen)))},
            features=features)

    datasets.DatasetDict({"train": part(0, 50), "validation": part(50, 62), "test": part(62, 72, hidden=True)}
                         ).save_to_disk(str(directory))
    return directory


def test_glue_style_pairs_with_a_hidden_test_split(tmp_path):
    data = load_task_data(TaskConfig(dataset=str(_mnli(tmp_path / "mnli")), text_column="premise",
                                     text_pair_column="hypothesis"))
    assert data.label_names == ("entailment", "neutral", "contradiction")
    assert len(data.validation) == 12 and data.train.pairs is not None
    source = {(r["text"], r["text_pair"]) for r in pair_rows()[:50]}
    assert all(pair in source for pair in zip(data.train.texts, data.train.pairs))  # each pair stays together
    assert len(data.test) > 0 and all(t in {r["text"] for r in pair_rows()[:50]} for t in data.test.texts)  # carved


def test_conll_style_tags_with_classlabel_names(tmp_path):
    import datasets

    rows = tag_rows()
    ids = {"B-SPORT": 1, "B-TECH": 3, "B-MONEY": 5, "O": 0}
    features = datasets.Features({"id": datasets.Value("string"), "tokens": datasets.Sequence(datasets.Value("string")),
                                  "ner_tags": datasets.Sequence(datasets.ClassLabel(names=NER))})
    part = datasets.Dataset.from_dict({"id": [str(i) for i in range(len(rows))], "tokens": [r["tokens"] for r in rows],
                                       "ner_tags": [[ids[t] for t in r["tags"]] for r in rows]}, features=features)
    datasets.DatasetDict({"train": part}).save_to_disk(str(tmp_path / "conll"))
    data = load_task_data(TaskConfig(kind="token_classification", dataset=str(tmp_path / "conll"),
                                     tags_column="ner_tags"))
    assert data.label_names == tuple(NER)
    words, tags = data.train.texts[0], data.train.labels[0]
    assert isinstance(words, tuple) and len(words) == len(tags)
    assert len(data.train) + len(data.validation) + len(data.test) == len(rows)


def test_squad_style_answers(tmp_path):
    import datasets

    rows = answer_rows()
    features = datasets.Features({
        "id": datasets.Value("string"), "title": datasets.Value("string"), "context": datasets.Value("string"),
        "question": datasets.Value("string"),
        "answers": datasets.Sequence({"text": datasets.Value("string"), "answer_start": datasets.Value("int32")})})
    part = datasets.Dataset.from_dict({key: [r.get(key, "t") for r in rows] for key in features}, features=features)
    datasets.DatasetDict({"train": part}).save_to_disk(str(tmp_path / "squad"))
    data = load_task_data(TaskConfig(kind="question_answering", dataset=str(tmp_path / "squad")))
    (texts, starts), context = data.train.labels[0], data.train.pairs[0]
    assert context[starts[0]:starts[0] + len(texts[0])] == texts[0]


@pytest.mark.parametrize("kind", sorted(TASK_KEYS))
def test_every_kind_reads_its_file(kind, tmp_path):
    data = load_task_data(TaskConfig(dataset=str(write_dataset(kind, tmp_path)), **TASK_KEYS[kind]))
    assert data.kind == kind and len(data.train) and len(data.validation) and len(data.test)


@pytest.mark.parametrize("kind, change, message", [
    ("regression", {"score": "high"}, r"task.label_column = 'score': row 0 of scores.csv holds 'high'.*a number"),
    ("token_classification", {"tags": ["O"]}, r"task.tags_column = 'tags': row 0 has 1 tags for \d+ words"),
    ("token_classification", {"tokens": "a sentence"}, r"task.tokens_column = 'tokens': row 0 of tags.jsonl holds "
                                                        r"'a sentence'.*a non-empty list of words"),
    ("question_answering", {"answers": {"text": ["zzz"], "answer_start": [0]}},
     r"task.answers_column = 'answers': row 0's answer 'zzz' is not at character 0"),
    ("question_answering", {"answers": "goal"}, r'task.answers_column = .*expected answers as \{"text"'),
])
def test_ill_typed_values_are_named(kind, change, message, tmp_path):
    import pandas as pd

    path = write_dataset(kind, tmp_path)
    frame = pd.read_csv(path) if path.suffix == ".csv" else pd.read_json(path, lines=True)
    for column, value in change.items():
        frame[column] = frame[column].astype(object)
        frame.at[0, column] = value
    if path.suffix == ".csv":
        frame.to_csv(path, index=False)
    else:
        frame.to_json(path, orient="records", lines=True)
    with pytest.raises(DataError, match=message):
        load_task_data(TaskConfig(dataset=str(path), **TASK_KEYS[kind]))


def test_a_missing_column_names_the_key_and_the_columns(tmp_path):
    path = write_dataset("question_answering", tmp_path)
    with pytest.raises(DataError, match=r"task.context_column = 'passage': no such column in answers.jsonl; its "
                                        r"columns are id, question, context, answers"):
        load_task_data(TaskConfig(kind="question_answering", dataset=str(path), context_column="passage"))


def test_the_builtin_topics_are_classification_only():
    with pytest.raises(DataError, match=r"'bbc_news' is a built-in classification dataset.*task.kind = 'regression'"):
        load_task_data(TaskConfig(kind="regression"))
