"""Serving in the runtime the user deploys: PyTorch, ONNX Runtime and OpenVINO, and their errors."""

from __future__ import annotations

import importlib.util

import pytest
import torch

from prunetune import metrics as M
from prunetune.errors import ConfigError, DeviceError
from prunetune.trainables.runtimes import ONNX_FILE, RUNTIMES, runtime_of
from prunetune.trainables.runtimes import _base as runtime_base
from prunetune.trainables.runtimes.onnx_runtime import OrtModel
from prunetune.trainables.runtimes.openvino_runtime import IR_FILE, WEIGHTS_FILE, OvModel
from prunetune.trainables.trial import run_trial
from tests.models import tiny_classifier

CPU = torch.device("cpu")


def _inputs(model, batch=3, length=12):
    generator = torch.Generator().manual_seed(3)
    input_ids = torch.randint(0, model.config.vocab_size, (batch, length), generator=generator)
    attention_mask = torch.ones_like(input_ids)
    attention_mask[0, length // 2:] = 0
    return {"input_ids": input_ids, "attention_mask": attention_mask, "token_type_ids": torch.zeros_like(input_ids)}


@pytest.mark.parametrize("runtime", ["onnxruntime", "openvino"])
def test_a_graph_runtime_at_fp32_computes_what_pytorch_computes(tmp_path, runtime):
    model = tiny_classifier(layers=2)
    inputs = _inputs(model)
    with torch.no_grad():
        expected = model(**inputs).logits
    served = runtime_of(runtime).serve(model, precision="fp32", device=CPU, threads=1, work_dir=tmp_path)
    assert served.artifact.is_file() and served.artifact.parent == tmp_path and served.device.type == "cpu"
    assert isinstance(served.model, {"onnxruntime": OrtModel, "openvino": OvModel}[runtime])
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(RUNTIMES[runtime].shipped_files)
    assert torch.allclose(served.model(**inputs).logits, expected, atol=1e-4)


@pytest.mark.parametrize("runtime", ["torch", "onnxruntime", "openvino"])
def test_int8_serves_through_each_runtime(tmp_path, runtime):
    model = tiny_classifier(layers=2, hidden=64, ffn=128)
    inputs = _inputs(model, batch=8)
    with torch.no_grad():
        expected = model(**inputs).logits
    served = runtime_of(runtime).serve(model, precision="int8", device=CPU, threads=1, work_dir=tmp_path)
    with torch.no_grad():
        actual = served.model(**inputs).logits
    # Rounded weights and activations: close to fp32, not equal to it.
    assert actual.shape == expected.shape and not torch.equal(actual, expected)
    assert (actual - expected).abs().max() < 0.1 * expected.abs().max() + 0.05
    if runtime == "onnxruntime":
        import onnx

        graph = onnx.load(str(served.artifact)).graph
        assert any(node.op_type in {"MatMulInteger", "DynamicQuantizeMatMul", "DynamicQuantizeLinear"}
                   for node in graph.node)
    if runtime == "openvino":  # NNCF inserts fake-quantise nodes around the matrix products
        import openvino

        ops = {op.get_type_name() for op in openvino.Core().read_model(str(served.artifact)).get_ops()}
        assert "FakeQuantize" in ops or "FakeConvert" in ops, ops


def test_openvino_int8_calibrates_on_the_inputs_it_is_given(tmp_path):
    """Calibration sets the activations' scales: other inputs give another quantised model."""
    model = tiny_classifier(layers=2, hidden=64, ffn=128)
    inputs = _inputs(model, batch=8)
    outputs = []
    for seed in (0, 1):
        generator = torch.Generator().manual_seed(seed)
        scale = 1 + 40 * seed  # token ids from a narrow or the full vocabulary
        feeds = [{"input_ids": torch.randint(0, min(model.config.vocab_size, 5 * scale), (1, 10),
                                             generator=generator).numpy()} for _ in range(6)]
        served = runtime_of("openvino").serve(model, precision="int8", device=CPU, threads=1,
                                              work_dir=tmp_path / str(seed), calibration=feeds)
        outputs.append(served.model(**inputs).logits)
    assert not torch.equal(outputs[0], outputs[1])


@pytest.mark.parametrize("runtime", ["onnxruntime", "openvino"])
def test_a_graph_runtime_trial_scores_what_pytorch_scores_at_fp32(tiny_config, tmp_path, runtime):
    in_torch = run_trial(tiny_config(), output_dir=tmp_path / "torch")
    served = run_trial(tiny_config(runtime=runtime), output_dir=tmp_path / runtime)
    assert M.missing_final_keys(served) == []
    assert served[M.ACCURACY] == pytest.approx(in_torch[M.ACCURACY], abs=1e-9)
    assert served[M.SPARSITY] == pytest.approx(in_torch[M.SPARSITY])
    # What was measured is what the trial ships, and it is measured beside both teachers.
    assert RUNTIMES[runtime].is_saved_in(tmp_path / runtime / "model")
    assert served[M.TEACHER_RUNTIME_LATENCY_MS] > 0
    assert served[M.SPEEDUP_SAME_RUNTIME] == pytest.approx(served[M.TEACHER_RUNTIME_LATENCY_MS] / served[M.LATENCY_MS])
    assert in_torch[M.SPEEDUP_SAME_RUNTIME] == pytest.approx(in_torch[M.SPEEDUP])


@pytest.mark.parametrize("runtime, package", [("onnxruntime", "onnxruntime"), ("openvino", "nncf")])
def test_a_runtime_that_is_not_installed_is_refused_before_any_work(monkeypatch, tiny_config, tmp_path, runtime,
                                                                     package):
    real = importlib.util.find_spec
    monkeypatch.setattr(runtime_base.importlib.util, "find_spec",
                        lambda name, *a: None if name == package else real(name, *a))
    config = tiny_config(runtime=runtime)  # a driver reading results needs no runtime
    with pytest.raises(ConfigError, match=rf"trial.runtime = '{runtime}' needs the package\(s\) {package}.*pip install"):
        run_trial(config, output_dir=tmp_path)
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize("runtime, precision", [("onnxruntime", "bf16"), ("openvino", "fp16"), ("openvino", "sparse24")])
def test_a_runtime_refuses_a_precision_it_does_not_serve(tiny_config, runtime, precision):
    with pytest.raises(ConfigError, match=rf"trial.inference_precision = '{precision}' with trial.runtime = "
                                          rf"'{runtime}': {runtime} serves .* on cpu"):
        tiny_config(runtime=runtime, inference_precision=precision)


def test_an_unknown_runtime_names_the_registry(tiny_config):
    with pytest.raises(ConfigError, match="trial.runtime.*'tensorrt'.*torch.*onnxruntime.*openvino"):
        tiny_config(runtime="tensorrt")


def test_onnxruntime_fp16_on_a_cpu_worker_says_where_it_is_served():
    problems = runtime_of("onnxruntime").device_problems("fp16", CPU)
    assert problems and "CUDA provider" in problems[0] and "fp32 or int8 on CPU workers" in problems[0]


def test_torch_int8_without_torch_ao_says_what_to_use_instead(monkeypatch):
    from prunetune.trainables.training import precision

    class NoDynamicQuantisation:
        pass

    monkeypatch.setattr(torch.ao, "quantization", NoDynamicQuantisation())
    with pytest.raises(DeviceError, match="trial.runtime = 'onnxruntime'.*'openvino'"):
        precision.to_inference_precision(tiny_classifier(), "int8", CPU)


def test_the_teacher_is_built_once_per_runtime_and_precision(tmp_path):
    calls = []

    def load_teacher():
        calls.append(1)
        return tiny_classifier(layers=2)

    runtime = runtime_of("openvino")
    for _ in range(2):
        served = runtime.serve_teacher(load_teacher, precision="int8", device=CPU, threads=1, cache_dir=tmp_path)
    assert len(calls) == 1
    directory = tmp_path / "runtimes" / "openvino-int8-cpu"
    assert served.artifact == directory / IR_FILE and (directory / WEIGHTS_FILE).is_file()
    assert not (directory / "staging").exists()


@pytest.mark.parametrize("runtime", ["torch", "onnxruntime", "openvino"])
def test_retiming_times_the_trial_in_its_runtime_beside_both_teachers(tmp_path, runtime):
    from prunetune.trainables.families.compaction import (
        compact_and_verify,
        save_compacted,
    )
    from prunetune.trainables.measure.retime import RetimeRequest, retime

    teacher_dir = tmp_path / "teacher" / "model"
    tiny_classifier(layers=2).save_pretrained(teacher_dir)
    student, _ = compact_and_verify(tiny_classifier(layers=2))
    model_dir = tmp_path / "trial" / "model"
    save_compacted(student, model_dir)
    if runtime != "torch":  # what the trial measured and saved
        RUNTIMES[runtime].build(student, model_dir, precision="int8", device=CPU, calibration=None)
    figures = retime(RetimeRequest(trial_id="t", model_dir=str(model_dir), teacher_dir=str(teacher_dir),
                                   inference_precision="int8", device="cpu", batch_size=1, seq_len=8, threads=1,
                                   min_run_time=0.05, rounds=2, max_spread=1.0, runtime=runtime))
    assert figures[M.SPEEDUP] == pytest.approx(figures[M.TEACHER_LATENCY_MS] / figures[M.LATENCY_MS])
    assert figures[M.SPEEDUP_SAME_RUNTIME] == pytest.approx(
        figures[M.TEACHER_RUNTIME_LATENCY_MS] / figures[M.LATENCY_MS])
    if runtime != "torch":  # the dense teacher's int8 model is cached beside the teacher
        assert RUNTIMES[runtime].is_saved_in(tmp_path / "teacher" / "runtimes" / f"{runtime}-int8-cpu")


def test_what_a_graph_runtime_ships_serves_with_its_package_alone(tiny_config, tmp_path):
    """In a process where prunetune cannot be imported, the tokenizer and the runtime's own package
    serve the runtime's directory (no remote code, no prompt), and predict what the trial predicts."""
    import json
    import os
    import subprocess
    import sys

    from transformers import AutoTokenizer

    from tests.models import WITHOUT_PRUNETUNE

    texts = ["goal match team score today", "bank market profit shares"]
    directories, expected = {}, {}
    for runtime in ("onnxruntime", "openvino"):
        model_dir = tmp_path / runtime / "model"
        run_trial(tiny_config(runtime=runtime, inference_precision="int8"), output_dir=tmp_path / runtime)
        served = RUNTIMES[runtime].load(model_dir, precision="int8", device=CPU, threads=1)
        batch = AutoTokenizer.from_pretrained(str(model_dir))(texts, padding=True, return_tensors="pt")
        expected[runtime] = served.model(**dict(batch)).logits.argmax(-1).tolist()
        directories[runtime] = str(RUNTIMES[runtime].write_serving_dir(model_dir, tmp_path / f"{runtime}-serving"))
    code = WITHOUT_PRUNETUNE + f"""
import json
import numpy, onnxruntime, openvino
from transformers import AutoTokenizer
directories, texts = {directories!r}, {texts!r}
out = {{}}
for runtime, directory in directories.items():
    batch = dict(AutoTokenizer.from_pretrained(directory)(texts, padding=True, return_tensors="np"))
    if runtime == "onnxruntime":
        session = onnxruntime.InferenceSession(directory + "/{ONNX_FILE}")
        logits = session.run(["logits"], {{i.name: batch[i.name] for i in session.get_inputs()}})[0]
    else:
        compiled = openvino.Core().compile_model(directory + "/{IR_FILE}", "CPU")
        names = [next(n for n in port.get_names() if n in batch) for port in compiled.inputs]
        logits = compiled({{name: batch[name] for name in names}})[0]
    out[runtime] = numpy.asarray(logits).argmax(-1).tolist()
print(json.dumps(out))
"""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    completed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300,
                               stdin=subprocess.DEVNULL)  # a remote-code prompt would fail, not wait
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert json.loads(completed.stdout.strip().splitlines()[-1]) == expected, completed.stdout[-2000:]


def _importable(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:
        return False


@pytest.mark.parametrize("runtime, module, head", [
    ("onnxruntime", "optimum.onnxruntime", "ORTModelForSequenceClassification"),
    ("openvino", "optimum.intel", "OVModelForSequenceClassification")])
def test_optimum_loads_what_a_graph_runtime_ships(tmp_path, runtime, module, head):
    """Where optimum's runtime package is installed (its pins on transformers differ from ours), its
    class loads the runtime's directory without remote code and computes what the trial served."""
    if not _importable(module):
        pytest.skip(f"{module} is not installed here")
    import importlib

    from transformers import BertTokenizer

    from prunetune.trainables.families.compaction import compact_and_verify, save_compacted

    student, _ = compact_and_verify(tiny_classifier(layers=2))
    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "goal", "bank", "market"]
    tokenizer = BertTokenizer(vocab={word: index for index, word in enumerate(words)})
    save_compacted(student, tmp_path / "model", tokenizer=tokenizer)
    RUNTIMES[runtime].build(student, tmp_path / "model", precision="fp32", device=CPU, calibration=None)
    serving = RUNTIMES[runtime].write_serving_dir(tmp_path / "model", tmp_path / runtime)
    model = getattr(importlib.import_module(module), head).from_pretrained(str(serving))
    batch = tokenizer(["goal bank", "market"], padding=True, return_tensors="pt")
    with torch.no_grad():
        assert torch.allclose(torch.as_tensor(model(**batch).logits), student(**batch).logits, atol=1e-4)
