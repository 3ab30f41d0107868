"""Export: a Hugging Face model directory that pipeline() loads and that predicts what the trial's model did."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from prunetune import metrics as M
from prunetune.analysis import analyse, export_trial, load_run
from prunetune.analysis.export import EXPORT_RECORD, SAMPLE_TEXTS
from prunetune.cli import main
from prunetune.errors import ConfigError
from tests.analysis.wandb_records import offline_runs
from tests.models import WITHOUT_PRUNETUNE

#: The remote code a compacted BERT ships: its entry module and the three it imports.
MODELING_FILE = "modeling_prunetune_bert.py"
SHIPPED_CODE = ("_spec.py", "_modeling.py", "bert.py")

TEXTS = ["The striker scored twice to win the cup final.", "Shares in the bank rose.", "Tennis"]


@pytest.fixture(scope="module")
def exported(model_run, tmp_path_factory):
    """Trial m1 exported once, with ONNX and a W&B artifact (offline), shared by the tests below."""
    import torch

    torch.set_num_threads(1)
    run = load_run(model_run)
    out = tmp_path_factory.mktemp("exports") / "m1"
    result = export_trial(run, analyse(run), "m1", out, onnx=True, why=["picked for a test"])
    return run, result


def _trial_predictions(model_dir: Path, texts: list[str]) -> list[str]:
    from transformers import AutoTokenizer

    from prunetune.trainables.families.compaction import load_compacted

    model = load_compacted(model_dir)
    batch = AutoTokenizer.from_pretrained(str(model_dir))(texts, padding=True, return_tensors="pt")
    return [model.config.id2label[int(i)] for i in model(**batch).logits.argmax(dim=-1)]


def test_export_writes_a_model_directory(exported):
    run, result = exported
    names = {p.name for p in result.files}
    assert {"model.safetensors", "config.json", "tokenizer.json", "tokenizer_config.json", "README.md",
            MODELING_FILE, *SHIPPED_CODE, EXPORT_RECORD, "model.onnx"} <= names
    config = json.loads((result.out_dir / "config.json").read_text())
    assert config["model_type"] == "prunetune_bert"
    assert config["auto_map"]["AutoModelForSequenceClassification"].startswith("modeling_prunetune_bert.")
    assert config["id2label"] == {"0": "business", "1": "entertainment", "2": "politics", "3": "sport", "4": "tech"}
    assert result.check.predictions_match and result.check.max_logit_difference < 1e-4
    assert result.check.onnx_max_difference < 1e-3


def test_pipeline_predicts_what_the_trial_predicted(exported, model_run):
    from transformers import pipeline

    _, result = exported
    classifier = pipeline("text-classification", model=str(result.out_dir), device="cpu")  # registered: no remote code
    assert [r["label"] for r in classifier(TEXTS)] == _trial_predictions(model_run / "trials" / "m1" / "model", TEXTS)


def test_export_loads_without_prunetune(exported, model_run, tmp_path):
    """A fresh process in which importing prunetune fails: the shipped modeling code is enough."""
    _, result = exported
    code = WITHOUT_PRUNETUNE + f"""
import json
from transformers import pipeline
classifier = pipeline("text-classification", model={str(result.out_dir)!r}, trust_remote_code=True, device="cpu")
print(json.dumps([r["label"] for r in classifier({TEXTS!r})]))
print(type(classifier.model).__module__)
"""
    env = {**os.environ, "HF_MODULES_CACHE": str(tmp_path / "modules"), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    completed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert completed.returncode == 0, completed.stderr[-3000:]
    labels_line, module_line = completed.stdout.strip().splitlines()[-2:]
    assert json.loads(labels_line) == _trial_predictions(model_run / "trials" / "m1" / "model", TEXTS)
    assert "modeling_prunetune_bert" in module_line and not module_line.startswith("prunetune")


def test_onnx_matches_pytorch(exported):
    import numpy as np
    import onnxruntime
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    _, result = exported
    tokenizer = AutoTokenizer.from_pretrained(str(result.out_dir))
    model = AutoModelForSequenceClassification.from_pretrained(str(result.out_dir)).eval()
    batch = tokenizer(list(SAMPLE_TEXTS[2:7]), padding=True, return_tensors="np")
    session = onnxruntime.InferenceSession(str(result.out_dir / "model.onnx"), providers=["CPUExecutionProvider"])
    # The graph takes what the tokenizer makes: BERT's token types too.
    assert [i.name for i in session.get_inputs()] == ["input_ids", "attention_mask", "token_type_ids"]
    (logits,) = session.run(["logits"], {k: batch[k].astype(np.int64) for k in ("input_ids", "attention_mask",
                                                                                 "token_type_ids")})
    with torch.no_grad():
        expected = model(input_ids=torch.from_numpy(batch["input_ids"]),
                         attention_mask=torch.from_numpy(batch["attention_mask"])).logits.numpy()
    assert np.abs(logits - expected).max() < 1e-4


def test_model_card_tells_metrics_configuration_and_front(exported):
    run, result = exported
    card = (result.out_dir / "README.md").read_text()
    assert card.startswith("---\nlibrary_name: transformers\npipeline_tag: text-classification")
    for text in ("## Metrics", "| accuracy | 0.9000 [0.8700, 0.9300] | 0.9500 |", "## Configuration",
                 "`trial.sparsity` | 0.6 | searched",
                 "## Place on the Pareto front", "**on the front**", "## Labels", "`sport`", "trust_remote_code=True",
                 "picked for a test", "model.onnx"):
        assert text in card, text
    record = json.loads((result.out_dir / EXPORT_RECORD).read_text())
    assert record["trial_id"] == "m1" and record["metrics"][M.LATENCY_MS] == 6.0


def test_model_card_states_held_out_figures_intervals_hardware_and_software(exported):
    run, result = exported
    card = (result.out_dir / "README.md").read_text()
    for text in ("| accuracy drop | 0.0500 [0.0300, 0.0700] |",
                 "| **accuracy drop (held-out test)** | **0.0700 [0.0400, 0.1000]** | 0.0000 |",
                 "| **accuracy (held-out test)** | **0.8800 [0.8500, 0.9100]** | 0.9500 |",
                 "on AMD EPYC (2 CPUs) with 1 thread(s), with torch 2.13.0, transformers 5.25.0",
                 f"prunetune search `{run.name}`", "95% paired-bootstrap interval"):
        assert text in card, text
    assert "node-1" not in card  # the figures name their hardware, never a Ray node


def test_no_exported_file_names_a_path_of_the_machine_that_ran_it(exported):
    run, result = exported
    local = str(run.run_dir.resolve().parent)
    for path in result.out_dir.rglob("*"):
        if path.is_file() and path.suffix in (".md", ".json", ".py", ".txt"):
            assert local not in path.read_text(), path.name
    record = json.loads((result.out_dir / EXPORT_RECORD).read_text())
    assert record["run"] == run.name and "run_dir" not in record


def test_a_copied_run_directory_exports_its_own_files(model_run, tmp_path):
    import shutil

    copy = tmp_path / "moved" / "search-m"
    shutil.copytree(model_run, copy)
    # The copy's results still record the original's trial directories; its own model must be the one read.
    (copy / "trials" / "m1" / "model" / "config.json").write_text(
        (copy / "trials" / "m1" / "model" / "config.json").read_text().replace('"sport"', '"sports"'))
    run = load_run(copy)
    assert run.model_dir("m1") == copy / "trials" / "m1" / "model"
    result = export_trial(run, analyse(run), "m1", tmp_path / "out", onnx=False, wandb=False)
    assert json.loads((result.out_dir / "config.json").read_text())["id2label"]["3"] == "sports"


def test_export_is_a_wandb_artifact(exported):
    run, result = exported
    assert result.wandb is not None and result.wandb.mode == "offline"
    (wb,) = [r for r in offline_runs(run.run_dir) if r.run.display_name == "export-m1"]
    artifacts = wb.of_kind("artifact")
    assert [a.type for a in artifacts] == ["model"]
    assert artifacts[0].name == f"{run.name}-m1"
    paths = {entry.path for entry in artifacts[0].manifest.contents}
    assert {"model.safetensors", "config.json", MODELING_FILE, "README.md"} <= paths


def test_a_plain_bert_exports_without_remote_code(model_run, tmp_path):
    from transformers import pipeline

    run = load_run(model_run)
    result = export_trial(run, analyse(run), "m3", tmp_path / "plain", wandb=False)
    config = json.loads((result.out_dir / "config.json").read_text())
    assert config["model_type"] == "bert" and "auto_map" not in config
    assert not (result.out_dir / MODELING_FILE).exists()
    assert "not on the front" in (result.out_dir / "README.md").read_text()
    classifier = pipeline("text-classification", model=str(result.out_dir), device="cpu")
    assert [r["label"] for r in classifier(TEXTS)] == _trial_predictions(model_run / "trials" / "m3" / "model", TEXTS)


def test_export_refuses_errored_trials_and_foreign_directories(model_run, tmp_path):
    run = load_run(model_run)
    analysis = analyse(run)
    with pytest.raises(ConfigError, match="m_err.*ended ERROR.*finished trials: m0, m1, m2, m3"):
        export_trial(run, analysis, "m_err", tmp_path / "x", wandb=False)
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(ConfigError, match="not a prunetune export"):
        export_trial(run, analysis, "m0", foreign, wandb=False)
    a_file = tmp_path / "model.tar"
    a_file.write_text("not a directory")
    with pytest.raises(ConfigError, match="is a file; choose an empty or new directory"):
        export_trial(run, analysis, "m0", a_file, wandb=False)
    assert a_file.read_text() == "not a directory"


def test_cli_export_by_pick(model_run, tmp_path, capsys):
    out = tmp_path / "picked"
    assert main(["export", str(model_run), "--max-latency-ms", "5", "--max-accuracy-drop", "0.2",
                 "--out", str(out), "--no-wandb"]) == 0
    printed = capsys.readouterr().out
    assert "Picked: trial m2" in printed and f"Exported trial m2 to {out}" in printed
    assert json.loads((out / EXPORT_RECORD).read_text())["trial_id"] == "m2"
    # Exporting again over a previous export replaces it.
    assert main(["export", str(model_run), "--trial", "m2", "--out", str(out), "--no-wandb"]) == 0
    assert main(["export", str(model_run), "--trial", "m2", "--prefer", "latency"]) == 2
    assert "cannot be combined" in capsys.readouterr().err


def test_model_card_says_how_to_serve_at_the_measured_precision():
    from prunetune.trainables.runtimes import RUNTIMES

    torch_runtime = RUNTIMES["torch"]
    assert torch_runtime.usage("fp32", "text-classification") == ""
    assert "quantize_dynamic" in torch_runtime.usage("int8", "text-classification")
    assert "float32" in torch_runtime.usage("int8", "text-classification")
    assert "torch.bfloat16" in torch_runtime.usage("bf16", "text-classification")
    assert "ORTModelForTokenClassification" in RUNTIMES["onnxruntime"].usage("int8", "token-classification")
    assert "OVModelForQuestionAnswering" in RUNTIMES["openvino"].usage("int8", "question-answering")


@pytest.mark.parametrize("runtime", ["onnxruntime", "openvino"])
def test_a_graph_runtime_trial_ships_the_files_it_measured(model_run, tmp_path, monkeypatch, runtime):
    """The int8 files a trial measured are shipped byte for byte, and the card says what the figures are for."""
    import shutil

    import torch

    from prunetune.trainables.families.compaction import load_compacted
    from prunetune.trainables.runtimes import RUNTIMES

    run_copy = tmp_path / "run"
    shutil.copytree(model_run, run_copy)
    run = load_run(run_copy)
    run.trials.loc[run.trials["trial_id"] == "m2", ["trial.runtime", "trial.inference_precision"]] = [runtime, "int8"]
    model_dir = run.model_dir("m2")
    if run_copy not in model_dir.parents:  # the rows name the original trial directories: point them here
        shutil.copytree(model_dir, tmp_path / "m2-model")
        model_dir = tmp_path / "m2-model"
        monkeypatch.setattr(type(run), "model_dir", lambda self, trial_id: model_dir)
    served = RUNTIMES[runtime]
    served.build(load_compacted(model_dir), model_dir, precision="int8", device=torch.device("cpu"), calibration=None)
    result = export_trial(run, analyse(run), "m2", tmp_path / "out", wandb=False)
    for name in served.shipped_files:
        assert (result.out_dir / name).read_bytes() == (model_dir / name).read_bytes()
    assert result.check.measured_runtime == runtime and 0.0 <= result.check.runtime_agreement <= 1.0
    card = (result.out_dir / "README.md").read_text()
    assert f"The figures are for {served.label} at `int8`" in card and "model that was measured" in card
    assert f'from_pretrained("out/{runtime}")' in card  # the directory by its name, never a local path
    serving = result.out_dir / runtime  # served without remote code: the family's own model type
    assert json.loads((serving / "config.json").read_text())["model_type"] == "bert"
    assert "auto_map" not in json.loads((serving / "config.json").read_text())
