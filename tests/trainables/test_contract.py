"""The contract every method and every encoder family keeps, run over the whole registry.

For each method x family, on a tiny random model built in code: a short trial (whose
compaction is checked against the masked model's logits inside the trial), the saved model
loading back with the same predictions, resuming from a checkpoint without re-running
steps, and the saved model directory serving through ``transformers.pipeline`` with its
shipped code. Adding a method or a family to its registry adds it here.
"""

from __future__ import annotations

import ast
import copy
import itertools
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from prunetune import metrics as M
from prunetune.names import MODEL_DIR
from prunetune.trainables.families import FAMILIES
from prunetune.trainables.methods import METHODS
from prunetune.trainables.runtimes import RUNTIMES, FileRuntime
from tests.models import WITHOUT_PRUNETUNE

#: Method options that fit the tiny models (FFN 64, small data).
OPTIONS = {"test_time": {"test_time": {"pseudo_label_samples": 40, "ranking_samples": 8, "ffn_group_size": 16,
                                       "prune_rounds": 2}}}
TEXTS = ["goal match team score today", "bank market profit shares", "chip software phone code robot"]
#: Two timing rounds: the contract checks that latency is measured, not how well (that is bench/'s).
LATENCY = {"batch_size": 1, "seq_len": 16, "min_run_time": 0.05, "rounds": 2}
#: The runtimes that serve from files (an ONNX graph, an OpenVINO model) rather than the module itself.
GRAPH_RUNTIMES = sorted(name for name, runtime in RUNTIMES.items() if isinstance(runtime, FileRuntime))
#: How layer 1 goes: emptied (every unit dead, its layer norms stay) or skipped (removed in training).
REMOVALS = ("emptied", "skipped")


class StopAfterFirstCheckpoint(Exception):
    pass


@pytest.fixture
def family_config(tiny_family_dir, tiny_dataset_csv, tmp_path_factory):
    from prunetune.config import validate
    from tests.conftest import tiny_config_dict

    def make(family: str, method: str):
        cache = tmp_path_factory.getbasetemp() / "teacher-cache"
        raw = tiny_config_dict(tiny_family_dir(family), tiny_dataset_csv, cache, method=method, latency=LATENCY,
                               **OPTIONS.get(method, {}))
        raw["teacher"]["epochs"] = 2  # the contract needs a teacher, not a good one
        return validate(raw, check_model=True)

    return make


@pytest.mark.parametrize("family", sorted(FAMILIES))
@pytest.mark.parametrize("method", sorted(METHODS))
def test_every_method_on_every_family(method, family, family_config, tmp_path):
    import torch
    from transformers import AutoTokenizer, pipeline

    from prunetune.trainables.families.compaction import load_compacted
    from prunetune.trainables.trial import run_trial

    config = family_config(family, method)

    def crash(metrics, checkpoint):
        raise StopAfterFirstCheckpoint

    with pytest.raises(StopAfterFirstCheckpoint):
        run_trial(config, output_dir=tmp_path, report=crash)
    steps = []
    metrics = run_trial(config, output_dir=tmp_path, report=lambda m, c: steps.append(m[M.STEP]))
    assert steps == [config.trial.max_steps]  # resumed at step 6: no intermediate report re-run
    assert M.missing_final_keys(metrics) == []
    assert metrics[M.SPARSITY] == pytest.approx(config.trial.sparsity, abs=0.07)

    model_dir = tmp_path / MODEL_DIR
    model = load_compacted(model_dir)
    assert sum(p.numel() for p in model.parameters()) == metrics[M.PARAMS]
    assert model.config.layer_heads == metrics[M.LAYER_HEADS]
    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    with torch.no_grad():
        expected = model(**tokenizer(TEXTS, padding=True, return_tensors="pt")).logits.argmax(dim=-1).tolist()
    served = pipeline("text-classification", model=str(model_dir), trust_remote_code=True, device="cpu")
    assert [model.config.label2id[r["label"]] for r in served(TEXTS)] == expected
    assert (model_dir / f"modeling_prunetune_{family}.py").is_file()  # served without prunetune: next test


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_every_family_prunes_to_a_target_speedup_with_layer_distillation(family, tiny_family_dir, tiny_dataset_csv,
                                                                         tmp_path, monkeypatch):
    """Whole structure to a speed (heads, or grouped-query key/value groups; FFN groups), read off a
    table whose layer cost is exactly bilinear, so that the prediction can be checked exactly."""
    from prunetune.config import validate
    from prunetune.trainables.methods import _speed
    from prunetune.trainables.trial import run_trial
    from tests.conftest import tiny_config_dict
    from tests.trainables.methods.test_speed import synthetic_table

    table = synthetic_table(heads=(1, 2, 3, 4), widths=(2, 32, 64), per_head=1.0, per_neuron=0.05)
    monkeypatch.setattr(_speed, "cached_table", lambda *args, **kwargs: table)
    raw = tiny_config_dict(tiny_family_dir(family), tiny_dataset_csv, tmp_path / "cache", method="movement",
                           sparsity=None, target_speedup=1.8, layer_distill=1.0, latency=LATENCY)
    metrics = run_trial(validate(raw, check_model=True), output_dir=tmp_path / "trial")
    assert M.missing_final_keys(metrics) == []
    assert metrics[M.PREDICTED_SPEEDUP] >= 1.8
    heads, widths = metrics[M.LAYER_HEADS], metrics[M.LAYER_FFN]
    assert table.dense_ms / table.predict(heads, widths) == pytest.approx(metrics[M.PREDICTED_SPEEDUP], rel=1e-6)
    group = 2 if family == "eurobert" else 1  # the tiny EuroBERT's query heads per key/value head
    assert all(h % group == 0 for h in heads), heads


@pytest.mark.parametrize("removal", REMOVALS)
@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_every_family_exports_to_onnx(family, removal, tiny_family_dir, tmp_path):
    from transformers import AutoTokenizer

    from prunetune.analysis.export import ONNX_TOLERANCE, export_onnx

    compacted = _compacted(tiny_family_dir(family), removal)
    tokenizer = AutoTokenizer.from_pretrained(str(tiny_family_dir(family)))
    # export_onnx runs onnxruntime on padded batches of several shapes and refuses a mismatch
    assert export_onnx(compacted, tokenizer, tmp_path / "model.onnx") < ONNX_TOLERANCE


@pytest.mark.parametrize("runtime", GRAPH_RUNTIMES)
@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_every_family_serves_in_every_graph_runtime(family, runtime, tiny_family_dir, tmp_path):
    """fp32 computes what PyTorch computes; int8 rounds weights and activations: close to it, not equal."""
    import torch
    from transformers import AutoTokenizer

    from prunetune.trainables.runtimes import runtime_of

    compacted = _compacted(tiny_family_dir(family))
    tokenizer = AutoTokenizer.from_pretrained(str(tiny_family_dir(family)))
    inputs = dict(tokenizer(TEXTS, padding=True, return_tensors="pt"))
    inputs.pop("token_type_ids", None)
    calibration = [{name: value[i:i + 1].numpy() for name, value in inputs.items()} for i in range(len(TEXTS))]
    with torch.no_grad():
        expected = compacted(**inputs).logits
        outputs = {precision: runtime_of(runtime).serve(
            copy.deepcopy(compacted), precision=precision, device=torch.device("cpu"), threads=1,
            work_dir=tmp_path / precision, calibration=calibration).model(**inputs).logits
            for precision in ("fp32", "int8")}
    assert torch.allclose(outputs["fp32"], expected, atol=1e-4)
    assert outputs["int8"].shape == expected.shape and not torch.equal(outputs["int8"], expected)
    assert (outputs["int8"] - expected).abs().max() < 0.1 * expected.abs().max() + 0.05


def _compacted(source: Path, removal: str = "emptied"):
    """The family's tiny model with head 1 (its group, in grouped-query attention) and a quarter of the FFN of layer 0 removed, and layer 1
    removed whole: emptied (its output biases made non-zero, so that what is left of it shows),
    or skipped as the pruner does in training."""
    import torch
    from transformers import AutoModelForSequenceClassification

    from prunetune.trainables.families import family_of
    from prunetune.trainables.families._modeling import layer_views
    from prunetune.trainables.families.compaction import compact_and_verify

    model = AutoModelForSequenceClassification.from_pretrained(str(source), num_labels=3).eval()
    with torch.no_grad():
        view_0, view_1 = layer_views(model, family_of(model))
        value, ffn_in = view_0.linear("value"), view_0.linear("ffn_in")
        value.weight[8:16] = 0
        ffn_in.weight[:16] = 0
        for linear, rows in ((value, slice(8, 16)), (ffn_in, slice(0, 16))):
            if linear.bias is not None:  # the families without biases (ModernBERT, EuroBERT, NomicBERT)
                linear.bias[rows] = 0
        for role in ("value", "ffn_in"):
            view_1.linear(role).weight.zero_()
            if view_1.linear(role).bias is not None:
                view_1.linear(role).bias.zero_()
        for role in ("attention_output", "ffn_out"):
            if view_1.linear(role).bias is not None:
                view_1.linear(role).bias.normal_(std=0.5)
    view_1.set_skipped(removal == "skipped")
    compacted, report = compact_and_verify(model)
    # Value rows 8-16 are head 1, or with grouped-query attention key/value head 1 and its group.
    assert report.layer_heads == (4 - view_0.group_size, 0) and report.layer_intermediate_sizes == (48, 0)
    assert report.skipped_layers == ((1,) if removal == "skipped" else ())
    return compacted


def test_shipped_modeling_code_imports_only_torch_transformers_and_itself():
    from prunetune.trainables import families

    allowed = {"__future__", "dataclasses", "functools", "inspect", "torch", "transformers"}
    package = Path(families.__file__).parent
    for name in ("_spec.py", "_modeling.py", *(f"{family}.py" for family in FAMILIES)):
        tree = ast.parse((package / name).read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.level == 0:
                assert node.module.split(".")[0] in allowed, (name, node.module)
            if isinstance(node, ast.Import):
                assert all(alias.name.split(".")[0] in allowed for alias in node.names), name


def test_every_family_serves_where_prunetune_is_not_installed(tiny_family_dir, tmp_path):
    """One fresh process per run, in which importing prunetune fails, loads every family's compacted model."""
    import torch
    from transformers import AutoTokenizer

    from prunetune.trainables.families.compaction import save_compacted

    expected = {}
    for family, removal in itertools.product(sorted(FAMILIES), REMOVALS):
        source = tiny_family_dir(family)
        compacted = _compacted(source, removal)
        tokenizer = AutoTokenizer.from_pretrained(str(source))
        directory = save_compacted(compacted, tmp_path / family / removal / MODEL_DIR, tokenizer=tokenizer)
        with torch.no_grad():
            logits = compacted(**tokenizer(TEXTS, padding=True, return_tensors="pt")).logits
        expected[str(directory)] = logits.argmax(dim=-1).tolist()
    code = WITHOUT_PRUNETUNE + f"""
import json
from transformers import pipeline
served = {{}}
for directory in {list(expected)!r}:
    classifier = pipeline("text-classification", model=directory, trust_remote_code=True, device="cpu")
    served[directory] = [classifier.model.config.label2id[r["label"]] for r in classifier({TEXTS!r})]
print(json.dumps(served))
"""
    env = {**os.environ, "HF_MODULES_CACHE": str(tmp_path / "modules"), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    completed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert json.loads(completed.stdout.strip().splitlines()[-1]) == expected
