"""The contract every task kind keeps, over every encoder family, in both runtimes.

For each kind x family, on a tiny random model built in code: a short trial served in ONNX
Runtime (the graph is checked against PyTorch, pair inputs and token types included, before
it is measured; the student trains and compacts in PyTorch), its final report carrying the
kind's metrics and their drops, the saved model loading back with its task's head, and the
saved directory serving through the kind's ``transformers.pipeline`` with its shipped code
as the trial's own model does. Adding a kind or a family to its registry adds it here.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from prunetune import metrics as M
from prunetune.names import MODEL_DIR
from prunetune.trainables.families import FAMILIES
from prunetune.trainables.tasks import TASKS
from tests.models import WITHOUT_PRUNETUNE
from tests.task_datasets import TASK_KEYS, write_dataset


@pytest.fixture(scope="module")
def task_config(tiny_family_dir, tmp_path_factory):
    from prunetune.config import validate
    from tests.conftest import tiny_config_dict

    data_dir = tmp_path_factory.mktemp("task-data")
    datasets = {kind: write_dataset(kind, data_dir) for kind in TASKS}

    def make(kind: str, family: str, **trial):
        # Two timing rounds: the contract checks that latency is measured, not how well.
        trial.setdefault("latency", {"batch_size": 1, "seq_len": 16, "min_run_time": 0.05, "rounds": 2})
        raw = tiny_config_dict(tiny_family_dir(family), datasets[kind], tmp_path_factory.getbasetemp() / "task-cache",
                               **trial)
        raw["task"].update(TASK_KEYS[kind])
        raw["teacher"]["epochs"] = 2  # the contract needs a teacher, not a good one
        return validate(raw, check_model=True)

    return make


@pytest.mark.parametrize("family", sorted(FAMILIES))
@pytest.mark.parametrize("kind", sorted(TASKS))
def test_every_task_kind_on_every_family(kind, family, task_config, tmp_path):
    from prunetune.analysis.export import TaskSamples, check_export
    from prunetune.trainables.families.compaction import load_compacted
    from prunetune.trainables.trial import run_trial

    config = task_config(kind, family, runtime="onnxruntime", layer_distill=0.5)
    metrics = run_trial(config, output_dir=tmp_path)
    assert M.missing_final_keys(metrics, kind) == []
    assert M.kind_of_report(metrics) == kind
    headline = M.headline_metric(kind)
    assert metrics[M.drop_key(headline)] == pytest.approx(metrics[M.teacher_key(headline)] - metrics[headline])
    # The per-example statistics the intervals resample add up to the reported headline figure.
    from prunetune.intervals import load_example_scores

    examples = load_example_scores(tmp_path / M.EXAMPLE_SCORES_FILE, config.task.eval_split)
    assert examples.metric() == pytest.approx(metrics[headline], abs=1e-7)
    for key in (headline, M.drop_key(headline)):
        low, high = (metrics[k] for k in M.interval_keys(key))
        assert low <= high
    assert metrics[M.SPARSITY] == pytest.approx(config.trial.sparsity, abs=0.07)
    model = load_compacted(tmp_path / MODEL_DIR)
    assert type(model).__name__.endswith(TASKS[kind].head)
    assert (tmp_path / MODEL_DIR / "model.onnx").is_file()
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(tmp_path / MODEL_DIR))
    samples = TaskSamples.of(config.task.model_dump())
    # The directory, reloaded, computes what the trial's model computes, and its task's pipeline
    # (with the shipped code) gives what the same pipeline over the trial's model gives.
    check = check_export(tmp_path / MODEL_DIR, tmp_path / MODEL_DIR, tokenizer, samples=samples)
    assert check.max_logit_difference < 1e-4


def test_a_pair_graph_takes_token_types_and_computes_what_pytorch_does(tiny_family_dir, tmp_path):
    import torch
    from transformers import AutoModelForSequenceClassification

    from prunetune.trainables.runtimes._graph import export_onnx, sample_inputs
    from prunetune.trainables.runtimes.onnx_runtime import OrtModel

    model = AutoModelForSequenceClassification.from_pretrained(str(tiny_family_dir("bert")), num_labels=2).eval()
    path = export_onnx(model, tmp_path / "model.onnx")
    graph = OrtModel(path, threads=1)
    assert graph.input_names == ["input_ids", "attention_mask", "token_type_ids"]
    pair = sample_inputs(model, batch_size=3, seq_len=12, seed=4)
    one_segment = {**pair, "token_type_ids": torch.zeros_like(pair["token_type_ids"])}
    with torch.no_grad():
        expected, single = model(**pair).logits, model(**one_segment).logits
    assert not torch.allclose(expected, single)  # the token types change what the model computes
    assert torch.allclose(graph(**pair).logits, expected, atol=1e-4)
    assert torch.allclose(graph(**{k: v for k, v in pair.items() if k != "token_type_ids"}).logits, single, atol=1e-4)


def test_families_without_token_types_export_without_them(tiny_family_dir, tmp_path):
    from transformers import AutoModelForQuestionAnswering

    from prunetune.trainables.runtimes._graph import export_onnx
    from prunetune.trainables.runtimes.onnx_runtime import OrtModel

    model = AutoModelForQuestionAnswering.from_pretrained(str(tiny_family_dir("distilbert")), num_labels=2).eval()
    graph = OrtModel(export_onnx(model, tmp_path / "model.onnx"), threads=1)
    assert graph.input_names == ["input_ids", "attention_mask"]
    assert graph.output_names == ["start_logits", "end_logits"]


def test_every_task_head_serves_where_prunetune_is_not_installed(task_config, tmp_path):
    """A fresh process in which importing prunetune fails serves each kind's compacted model."""
    from prunetune.trainables.trial import run_trial

    directories = {}
    for kind in sorted(TASKS):
        config = task_config(kind, "bert", max_steps=6, eval_every=6)
        run_trial(config, output_dir=tmp_path / kind)
        directories[kind] = str(tmp_path / kind / MODEL_DIR)
    code = WITHOUT_PRUNETUNE + f"""
import json
from transformers import pipeline
directories = {directories!r}
out = {{}}
out["classification"] = pipeline("text-classification", model=directories["classification"],
                                 trust_remote_code=True)({{"text": "goal match", "text_pair": "bank tax"}})["label"]
out["regression"] = float(pipeline("text-classification", model=directories["regression"], trust_remote_code=True,
                                   function_to_apply="none")({{"text": "goal", "text_pair": "team"}})["score"])
out["token_classification"] = pipeline("token-classification", model=directories["token_classification"],
                                       trust_remote_code=True, aggregation_strategy="simple")("the goal today")
out["question_answering"] = pipeline("question-answering", model=directories["question_answering"],
                                     trust_remote_code=True)(question="which sport word", context="the goal today")["answer"]
print(json.dumps(out, default=str))
"""
    env = {**os.environ, "HF_MODULES_CACHE": str(tmp_path / "modules"), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    completed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert completed.returncode == 0, completed.stderr[-3000:]
    served = json.loads(completed.stdout.strip().splitlines()[-1])
    assert served["classification"] in ("same", "other")
    assert isinstance(served["regression"], float)
    assert isinstance(served["token_classification"], list)
    assert served["question_answering"] in "the goal today"


@pytest.mark.parametrize("kind", sorted(TASKS))
def test_every_task_kind_is_evaluated_on_its_held_out_split(kind, task_config, tmp_path):
    """The front's held-out evaluation, for each kind's headline metric: the trial's files served as
    measured, paired with the teacher's examples on the test split."""
    from prunetune.intervals import load_example_scores
    from prunetune.trainables.measure.held_out import HeldOutRequest, evaluate_held_out
    from prunetune.trainables.training.teacher import prepare_teacher
    from prunetune.trainables.trial import run_trial

    config = task_config(kind, "bert", runtime="onnxruntime")
    run_trial(config, output_dir=tmp_path)
    teacher = prepare_teacher(config)
    figures = evaluate_held_out(HeldOutRequest(trial_id="t", trial_dir=str(tmp_path),
                                               teacher_dir=str(teacher.model_dir)))
    assert set(figures) == set(M.held_out_keys(kind))
    headline = M.headline_metric(kind)
    value, drop = figures[M.held_out_key(headline)], figures[M.held_out_key(M.drop_key(headline))]
    assert drop == pytest.approx(figures[M.held_out_key(M.teacher_key(headline))] - value)
    low, high = (figures[k] for k in M.interval_keys(M.held_out_key(M.drop_key(headline))))
    assert low <= high
    test_scores = load_example_scores(tmp_path / M.EXAMPLE_SCORES_FILE, M.HELD_OUT_SPLIT)
    assert test_scores.metric() == pytest.approx(value, abs=1e-7)
    # The search's own split is kept beside it: the two are different examples.
    assert load_example_scores(tmp_path / M.EXAMPLE_SCORES_FILE, config.task.eval_split) is not None
