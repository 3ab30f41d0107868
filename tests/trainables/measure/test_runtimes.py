"""Serving in the runtime the user deploys: ONNX Runtime fp32 and int8, torch int8, and their errors."""

from __future__ import annotations

import importlib.util

import pytest
import torch

from prunetune import metrics as M
from prunetune.errors import ConfigError, DeviceError
from prunetune.trainables.measure import runtime_checks
from prunetune.trainables.measure.runtimes import ONNX_FILE, OrtModel, serve
from prunetune.trainables.trial import run_trial
from tests.models import tiny_classifier

pytest.importorskip("onnxruntime")


def _inputs(model, batch=3, length=12):
    generator = torch.Generator().manual_seed(3)
    input_ids = torch.randint(0, model.config.vocab_size, (batch, length), generator=generator)
    attention_mask = torch.ones_like(input_ids)
    attention_mask[0, length // 2:] = 0
    return {"input_ids": input_ids, "attention_mask": attention_mask, "token_type_ids": torch.zeros_like(input_ids)}


def test_onnxruntime_fp32_computes_what_pytorch_computes(tmp_path):
    model = tiny_classifier(layers=2)
    inputs = _inputs(model)
    with torch.no_grad():
        expected = model(**inputs).logits
    served = serve(model, runtime="onnxruntime", precision="fp32", device=torch.device("cpu"), threads=1,
                   work_dir=tmp_path)
    assert served.artifact == tmp_path / ONNX_FILE and served.artifact.is_file()
    assert isinstance(served.model, OrtModel) and served.device.type == "cpu"
    assert torch.allclose(served.model(**inputs).logits, expected, atol=1e-4)


@pytest.mark.parametrize("runtime", ["torch", "onnxruntime"])
def test_int8_serves_through_each_runtime(tmp_path, runtime):
    model = tiny_classifier(layers=2, hidden=64, ffn=128)
    inputs = _inputs(model, batch=8)
    with torch.no_grad():
        expected = model(**inputs).logits
    served = serve(model, runtime=runtime, precision="int8", device=torch.device("cpu"), threads=1, work_dir=tmp_path)
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


def test_onnxruntime_trial_accuracy_equals_pytorch_at_fp32(tiny_config, tmp_path):
    in_torch = run_trial(tiny_config(), output_dir=tmp_path / "torch")
    in_ort = run_trial(tiny_config(runtime="onnxruntime"), output_dir=tmp_path / "ort")
    assert M.missing_final_keys(in_ort) == []
    assert in_ort[M.ACCURACY] == pytest.approx(in_torch[M.ACCURACY], abs=1e-9)
    assert in_ort[M.SPARSITY] == pytest.approx(in_torch[M.SPARSITY])
    # What was measured is what the trial ships, and it is measured beside both teachers.
    assert (tmp_path / "ort" / "model" / ONNX_FILE).is_file()
    assert in_ort[M.TEACHER_RUNTIME_LATENCY_MS] > 0
    assert in_ort[M.SPEEDUP_SAME_RUNTIME] == pytest.approx(in_ort[M.TEACHER_RUNTIME_LATENCY_MS] / in_ort[M.LATENCY_MS])
    assert in_torch[M.SPEEDUP_SAME_RUNTIME] == pytest.approx(in_torch[M.SPEEDUP])


def test_a_runtime_that_is_not_installed_is_refused_before_any_work(monkeypatch, tiny_config, tmp_path):
    real = importlib.util.find_spec
    monkeypatch.setattr(runtime_checks.importlib.util, "find_spec",
                        lambda name, *a: None if name == "onnxruntime" else real(name, *a))
    config = tiny_config(runtime="onnxruntime")  # a driver reading results needs no runtime
    with pytest.raises(ConfigError, match=r"trial.runtime = 'onnxruntime' needs the package\(s\) onnxruntime"):
        run_trial(config, output_dir=tmp_path)
    assert not any(tmp_path.iterdir())


def test_onnxruntime_refuses_a_precision_it_does_not_serve(tiny_config):
    with pytest.raises(ConfigError, match="trial.inference_precision = 'bf16' with trial.runtime = 'onnxruntime'"):
        tiny_config(runtime="onnxruntime", inference_precision="bf16")


def test_torch_int8_without_torch_ao_says_what_to_use_instead(monkeypatch):
    from prunetune.trainables.training import precision

    class NoDynamicQuantisation:
        pass

    monkeypatch.setattr(torch.ao, "quantization", NoDynamicQuantisation())
    with pytest.raises(DeviceError, match="trial.runtime = 'onnxruntime'"):
        precision.to_inference_precision(tiny_classifier(), "int8", torch.device("cpu"))


@pytest.mark.parametrize("runtime", ["torch", "onnxruntime"])
def test_retiming_times_the_trial_in_its_runtime_beside_both_teachers(tmp_path, runtime):
    from prunetune.trainables.families.compaction import (
        compact_and_verify,
        save_compacted,
    )
    from prunetune.trainables.measure.retime import RetimeRequest, retime
    from prunetune.trainables.measure.runtimes import build_onnx

    teacher_dir = tmp_path / "teacher" / "model"
    tiny_classifier(layers=2).save_pretrained(teacher_dir)
    student, _ = compact_and_verify(tiny_classifier(layers=2))
    model_dir = tmp_path / "trial" / "model"
    save_compacted(student, model_dir)
    if runtime == "onnxruntime":
        build_onnx(student, model_dir, "int8")  # what the trial measured and saved
    figures = retime(RetimeRequest(trial_id="t", model_dir=str(model_dir), teacher_dir=str(teacher_dir),
                                   inference_precision="int8", device="cpu", batch_size=1, seq_len=8, threads=1,
                                   min_run_time=0.05, rounds=2, max_spread=1.0, runtime=runtime))
    assert figures[M.SPEEDUP] == pytest.approx(figures[M.TEACHER_LATENCY_MS] / figures[M.LATENCY_MS])
    assert figures[M.SPEEDUP_SAME_RUNTIME] == pytest.approx(
        figures[M.TEACHER_RUNTIME_LATENCY_MS] / figures[M.LATENCY_MS])
    if runtime == "onnxruntime":  # the dense teacher's int8 graph is cached beside the teacher
        assert (tmp_path / "teacher" / "runtimes" / "onnxruntime-int8" / ONNX_FILE).is_file()
