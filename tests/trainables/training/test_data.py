"""Loading, encoding, splitting and checking a task's data (prunetune.trainables.data)."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest

from prunetune.config import TaskConfig
from prunetune.errors import DataError
from prunetune.trainables.training.data import (
    SPLIT_NAMES,
    Split,
    TaskData,
    load_task_data,
)

BBC_TOPICS = ("business", "entertainment", "politics", "sports", "tech")


# --------------------------------------------------------------------------- bbc_news


@pytest.fixture(scope="module")
def bbc() -> TaskData:
    return load_task_data(TaskConfig())


def test_bbc_news_has_every_document_once(bbc):
    assert len(bbc.train) + len(bbc.validation) + len(bbc.test) == 2225
    every_text = bbc.train.texts + bbc.validation.texts + bbc.test.texts
    assert len(set(every_text)) > 2100  # the corpus has a few duplicate articles, no more


def test_bbc_news_labels_are_the_sorted_folder_names(bbc):
    assert bbc.label_names == BBC_TOPICS
    assert bbc.num_labels == 5
    assert all(isinstance(t, str) and t for t in bbc.train.texts)


def test_bbc_news_split_sizes_and_stratification(bbc):
    total = Counter(bbc.train.labels + bbc.validation.labels + bbc.test.labels)
    assert len(bbc.validation) == pytest.approx(0.15 * 2225, abs=2)
    assert len(bbc.test) == pytest.approx(0.15 * 2225, abs=2)
    for name in SPLIT_NAMES:
        split = bbc.split(name)
        counts = Counter(split.labels)
        for label, count in total.items():
            assert counts[label] / len(split) == pytest.approx(count / 2225, abs=0.01)


def test_bbc_news_non_utf8_article_is_decoded(bbc):
    every_text = bbc.train.texts + bbc.validation.texts + bbc.test.texts
    assert any("£15.8m signing from Parma" in text for text in every_text)


def test_same_config_gives_identical_data(bbc):
    again = load_task_data(TaskConfig())
    assert again == bbc
    assert again.fingerprint == bbc.fingerprint
    assert len(bbc.fingerprint) == 64 and set(bbc.fingerprint) <= set("0123456789abcdef")  # a sha256 hex digest


def test_another_seed_gives_another_split(bbc):
    other = load_task_data(TaskConfig(seed=1))
    assert set(other.test.texts) != set(bbc.test.texts)
    assert other.fingerprint != bbc.fingerprint
    assert other.label_names == bbc.label_names


def test_split_by_name_rejects_unknown_names(bbc):
    assert bbc.split("validation") is bbc.validation
    with pytest.raises(DataError, match="'dev'.*train, validation, test"):
        bbc.split("dev")


def test_max_samples_subsample_with_class_proportions():
    data = load_task_data(TaskConfig(max_train_samples=100, max_eval_samples=50))
    assert (len(data.train), len(data.validation), len(data.test)) == (100, 50, 50)
    assert set(data.train.labels) == set(range(5))
    business = Counter(data.train.labels)[0]
    assert business == pytest.approx(100 * 510 / 2225, abs=1.5)


# --------------------------------------------------------------------------- files

LABELS = ("neg", "neu", "pos")


def _records(per_label: int = 10) -> list[dict]:
    return [
        {"review": f"{label} review number {i}", "stars": label}
        for label in LABELS
        for i in range(per_label)
    ]


def _task(path: Path, **overrides) -> TaskConfig:
    return TaskConfig(dataset=str(path), text_column="review", label_column="stars", **overrides)


def _write(records: list[dict], path: Path) -> Path:
    frame = pd.DataFrame.from_records(records)
    if path.suffix == ".csv":
        frame.to_csv(path, index=False)
    elif path.suffix == ".parquet":
        frame.to_parquet(path)
    elif path.suffix == ".jsonl":
        path.write_text("\n".join(json.dumps(r) for r in records) + "\n")
    else:
        path.write_text(json.dumps(records))
    return path


@pytest.mark.parametrize("name", ["data.csv", "data.json", "data.jsonl", "data.parquet"])
def test_files_load_with_custom_columns(tmp_path, name):
    data = load_task_data(_task(_write(_records(), tmp_path / name)))
    assert data.label_names == LABELS
    assert len(data.train) + len(data.validation) + len(data.test) == 30
    assert len(data.validation) >= 3 and len(data.test) >= 3
    for name_ in SPLIT_NAMES:
        split = data.split(name_)
        assert all(text.startswith(LABELS[label]) for text, label in zip(split.texts, split.labels))


def test_json_lines_in_a_json_file(tmp_path):
    path = _write(_records(), tmp_path / "data.jsonl").rename(tmp_path / "lines.json")
    assert load_task_data(_task(path)).label_names == LABELS


def test_every_format_gives_the_same_data(tmp_path):
    fingerprints = {
        load_task_data(_task(_write(_records(), tmp_path / name))).fingerprint
        for name in ("a.csv", "a.json", "a.jsonl", "a.parquet")
    }
    assert len(fingerprints) == 1


def test_numeric_labels_sort_numerically_and_keep_text_that_looks_numeric(tmp_path):
    records = [{"review": str(i), "stars": stars} for stars in (2, 10, 1) for i in range(10)]
    data = load_task_data(_task(_write(records, tmp_path / "n.csv")))
    assert data.label_names == ("1", "2", "10")
    assert all(isinstance(t, str) for t in data.train.texts)
    for text, label in zip(data.train.texts, data.train.labels):
        assert text in {str(i) for i in range(10)} and data.label_names[label] in {"1", "2", "10"}


def test_split_column_is_used(tmp_path):
    records = _records()
    for i, record in enumerate(records):
        record["split"] = ("train", "train", "train", "validation", "test")[i % 5]
    data = load_task_data(_task(_write(records, tmp_path / "s.parquet")))
    assert (len(data.train), len(data.validation), len(data.test)) == (18, 6, 6)
    assert set(data.test.texts) == {r["review"] for r in records if r["split"] == "test"}


def test_split_column_without_test_rows_carves_test_from_train(tmp_path):
    records = _records()
    for i, record in enumerate(records):
        record["split"] = "validation" if i % 5 == 0 else "train"
    data = load_task_data(_task(_write(records, tmp_path / "s.csv"), test_fraction=0.2))
    assert len(data.validation) == 6
    assert len(data.test) == 5 and len(data.train) == 19  # ceil(0.2 * 24) carved out of train


def test_max_eval_samples_applies_to_validation_and_test(tmp_path):
    path = _write(_records(per_label=40), tmp_path / "big.csv")
    data = load_task_data(_task(path, max_train_samples=30, max_eval_samples=9))
    assert (len(data.train), len(data.validation), len(data.test)) == (30, 9, 9)
    assert Counter(data.validation.labels) == {0: 3, 1: 3, 2: 3}
    assert Counter(data.train.labels) == {0: 10, 1: 10, 2: 10}


def test_max_samples_above_split_size_change_nothing(tmp_path):
    path = _write(_records(), tmp_path / "d.csv")
    assert load_task_data(_task(path, max_train_samples=1000, max_eval_samples=1000)) == load_task_data(_task(path))


def test_split_dataclass_checks_lengths():
    with pytest.raises(ValueError, match="2 texts but 1 labels"):
        Split(texts=("a", "b"), labels=(0,))


# --------------------------------------------------------------------------- errors


def test_missing_file(tmp_path):
    missing = tmp_path / "nope.csv"
    with pytest.raises(DataError, match=r"task.dataset = '.*nope.csv': file not found"):
        load_task_data(_task(missing))


def test_missing_column_lists_the_columns(tmp_path):
    path = _write(_records(), tmp_path / "d.csv")
    with pytest.raises(DataError, match=r"task.text_column = 'text': no such column.*review, stars"):
        load_task_data(TaskConfig(dataset=str(path), label_column="stars"))
    with pytest.raises(DataError, match=r"task.label_column = 'label': no such column.*review, stars"):
        load_task_data(TaskConfig(dataset=str(path), text_column="review"))


def test_a_single_label_is_refused(tmp_path):
    records = [{"review": f"r{i}", "stars": "pos"} for i in range(10)]
    with pytest.raises(DataError, match=r"task.label_column = 'stars'.*1 distinct label.*'pos'.*at least 2"):
        load_task_data(_task(_write(records, tmp_path / "d.csv")))


def test_an_empty_split_is_named_with_the_sizes(tmp_path):
    records = _records()
    for i, record in enumerate(records):
        record["split"] = "validation" if i % 2 else "test"
    with pytest.raises(DataError, match=r"split 'train' is empty \(sizes: train 0, validation 15, test 15\)"):
        load_task_data(_task(_write(records, tmp_path / "d.jsonl")))


def test_evaluation_labels_unseen_in_training_are_named(tmp_path):
    records = _records()
    for record in records:
        record["split"] = "test" if record["stars"] == "neu" else "train"
    with pytest.raises(DataError, match=r"test has label\(s\) 'neu' that train never has"):
        load_task_data(_task(_write(records, tmp_path / "d.json")))


@pytest.mark.parametrize(
    ("bad", "shown"),
    [(None, r"a missing value \(None/NaN\)"), (float("nan"), r"a missing value \(None/NaN\)"), (42, "42 of type int")],
)
def test_non_text_values_name_the_row(tmp_path, bad, shown):
    records = _records()
    records[7]["review"] = bad
    path = _write(records, tmp_path / "d.parquet") if bad is None else _write(records, tmp_path / "d.jsonl")
    with pytest.raises(DataError, match=rf"task.text_column = 'review': row 7 of d\.\w+ holds {shown}"):
        load_task_data(_task(path))


def test_an_empty_csv_cell_is_not_text(tmp_path):
    records = _records()
    records[3]["review"] = ""
    path = _write(records, tmp_path / "d.csv")  # pandas reads an empty cell back as NaN
    with pytest.raises(DataError, match=r"row 3 of d.csv holds a missing value"):
        load_task_data(_task(path))


def test_a_class_too_small_to_stratify_is_named(tmp_path):
    records = _records() + [{"review": "lonely", "stars": "rare"}, {"review": "alone", "stars": "rare"}]
    with pytest.raises(DataError, match=r"class 'rare' has only 2 example\(s\).*train, test and validation needs at least 3"):
        load_task_data(_task(_write(records, tmp_path / "d.csv")))


def test_a_bad_split_value_is_named(tmp_path):
    records = _records()
    for record in records:
        record["split"] = "dev"
    with pytest.raises(DataError, match=r"column 'split' holds 'dev'; expected only train, validation, test"):
        load_task_data(_task(_write(records, tmp_path / "d.csv")))


def test_a_missing_label_is_named(tmp_path):
    records = _records()
    records[4]["stars"] = None
    with pytest.raises(DataError, match=r"task.label_column = 'stars': row 4 of d.json has no label"):
        load_task_data(_task(_write(records, tmp_path / "d.json")))


def test_json_that_is_not_records(tmp_path):
    path = tmp_path / "d.json"
    path.write_text(json.dumps([["a", "b"]]))
    with pytest.raises(DataError, match="expected a list of records"):
        load_task_data(_task(path))


# --------------------------------------------------------------------------- Hugging Face


def _fake_hf(monkeypatch, dataset_dict=None, error=None):
    import datasets

    calls = []

    def load_dataset(name, config=None, *args, **kwargs):
        calls.append((name, config))
        if error is not None:
            raise error
        return dataset_dict

    monkeypatch.setattr(datasets, "load_dataset", load_dataset)
    return calls


def _hf_dict(splits: dict[str, int]):
    import datasets

    features = datasets.Features(
        {"sentence": datasets.Value("string"), "label": datasets.ClassLabel(names=["neg", "pos", "mixed"])}
    )
    return datasets.DatasetDict(
        {
            name: datasets.Dataset.from_dict(
                {"sentence": [f"{name} {i}" for i in range(size)], "label": [i % 3 for i in range(size)]},
                features=features,
            )
            for name, size in splits.items()
        }
    )


def test_hf_dataset_keeps_its_splits_and_class_label_names(monkeypatch):
    calls = _fake_hf(monkeypatch, _hf_dict({"train": 30, "test": 9, "unsupervised": 5}))
    task = TaskConfig(dataset="someone/reviews", hf_config="small", text_column="sentence")
    data = load_task_data(task)
    assert calls == [("someone/reviews", "small")]
    assert data.label_names == ("neg", "pos", "mixed")  # ClassLabel order, not sorted
    assert len(data.test) == 9 and all(t.startswith("test") for t in data.test.texts)
    assert len(data.validation) == 5 and len(data.train) == 25  # validation carved from train
    assert all(int(t.split()[1]) % 3 == label for t, label in zip(data.train.texts, data.train.labels))


def test_hf_hidden_test_labels_are_replaced_by_a_carved_test_split(monkeypatch):
    import datasets

    dataset_dict = _hf_dict({"train": 30, "validation": 9, "test": 6})
    hidden = dataset_dict["test"].cast_column("label", datasets.Value("int64"))
    dataset_dict["test"] = hidden.map(lambda row: {"label": -1})
    _fake_hf(monkeypatch, dataset_dict)
    data = load_task_data(TaskConfig(dataset="glue-like", text_column="sentence"))
    assert len(data.validation) == 9 and len(data.test) == 5
    assert all(t.startswith("train") for t in data.test.texts)


def test_hf_failure_names_the_dataset_id(monkeypatch):
    _fake_hf(monkeypatch, error=ConnectionError("no network"))
    with pytest.raises(DataError, match=r"task.dataset = 'someone/reviews'.*Hugging Face dataset.*no network"):
        load_task_data(TaskConfig(dataset="someone/reviews"))


def test_hf_missing_column_lists_the_columns(monkeypatch):
    _fake_hf(monkeypatch, _hf_dict({"train": 30}))
    with pytest.raises(DataError, match=r"task.text_column = 'text': no such column.*sentence, label"):
        load_task_data(TaskConfig(dataset="someone/reviews"))
