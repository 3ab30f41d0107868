"""A worker that runs several trials reads the data and the teacher once, and each trial still
computes what it would compute in a fresh process."""

import pandas as pd
import pytest

from prunetune import metrics as M
from prunetune.trainables.training import worker_cache
from prunetune.trainables.trial import run_trial

#: What a trial computes from its configuration and seed (latency and energy are measured, not computed).
COMPUTED = (M.ACCURACY, M.SPARSITY, M.PARAMS, M.ACCURACY_DROP, M.TEACHER_ACCURACY)


@pytest.fixture(autouse=True)
def _fresh_worker():
    worker_cache.clear()
    yield
    worker_cache.clear()


def test_a_second_trial_on_a_worker_reads_nothing_again_and_computes_the_same(tiny_config, tmp_path):
    first = run_trial(tiny_config(sparsity=0.3), output_dir=tmp_path / "a")
    made = worker_cache.counts()["misses"]
    second = run_trial(tiny_config(sparsity=0.6), output_dir=tmp_path / "b")
    after = worker_cache.counts()
    assert after["misses"] == made, "the second trial loaded something the first had already loaded"
    assert after["hits"] >= 4  # data, teacher, tokenizer and weights, the teacher's outputs

    worker_cache.clear()  # the same trial in a process that ran nothing before
    alone = run_trial(tiny_config(sparsity=0.6), output_dir=tmp_path / "c")
    assert {key: second[key] for key in COMPUTED} == {key: alone[key] for key in COMPUTED}
    assert first[M.SPARSITY] < second[M.SPARSITY]  # and each trial pruned its own copy of the teacher


def test_a_dataset_file_rewritten_in_place_is_read_again(tiny_config, tiny_dataset_csv, tmp_path):
    config = tiny_config()
    before = worker_cache.task_data(config.task)
    rows = pd.read_csv(tiny_dataset_csv)
    copy = tmp_path / "topics.csv"
    rows.to_csv(copy, index=False)
    moved = config.model_copy(update={"task": config.task.model_copy(update={"dataset": str(copy)})})
    assert worker_cache.task_data(moved.task) is worker_cache.task_data(moved.task)
    rows.iloc[: len(rows) - 3].to_csv(copy, index=False)  # three rows fewer, same name
    shrunk = worker_cache.task_data(moved.task)
    assert rows_in(shrunk) == rows_in(before) - 3


def rows_in(data) -> int:
    return len(data.train) + len(data.validation) + len(data.test)
