import pytest
import torch

from prunetune.errors import DeviceError
from prunetune.trainables.measure.size import count_params
from prunetune.trainables.training.precision import (
    autocast_context,
    check_training_precision,
    grad_scaler,
    resolve_device,
    to_inference_precision,
)
from tests.models import tiny_classifier

CPU = torch.device("cpu")


def test_fp16_training_on_cpu_is_a_clear_error():
    with pytest.raises(DeviceError, match="trial.precision = 'fp16' needs a CUDA GPU"):
        check_training_precision("fp16", CPU)
    check_training_precision("bf16", CPU)
    check_training_precision("fp32", CPU)


def test_int8_on_gpu_is_refused():
    with pytest.raises(DeviceError, match="int8"):
        to_inference_precision(tiny_classifier(), "int8", torch.device("cuda"))


def test_fp32_autocast_is_free_and_bf16_autocast_runs():
    model = tiny_classifier()
    inputs = torch.randint(0, 50, (2, 8))
    with autocast_context("fp32", CPU):
        assert model(input_ids=inputs).logits.dtype == torch.float32
    with autocast_context("bf16", CPU):
        assert model(input_ids=inputs).logits.dtype == torch.bfloat16
    assert not grad_scaler("bf16", CPU).is_enabled()


def test_int8_dynamic_quantisation_keeps_predictions_close():
    model = tiny_classifier().eval()
    inputs = torch.randint(0, 50, (4, 8))
    with torch.no_grad():
        expected = model(input_ids=inputs).logits
        quantised = to_inference_precision(tiny_classifier().eval(), "int8", CPU)
        actual = quantised(input_ids=inputs).logits
    assert type(quantised.bert.encoder.layer[0].attention.self.query).__name__ == "Linear"
    assert "quantized" in type(quantised.bert.encoder.layer[0].attention.self.query).__module__
    assert torch.allclose(expected, actual, atol=0.05)
    assert count_params(quantised) == count_params(model)


def test_bf16_inference_casts_weights():
    model = to_inference_precision(tiny_classifier(), "bf16", CPU)
    assert next(model.parameters()).dtype == torch.bfloat16


def test_resolve_device():
    assert resolve_device("cpu") == CPU
    assert resolve_device("auto").type in {"cpu", "cuda"}
    if not torch.cuda.is_available():
        with pytest.raises(DeviceError, match="no CUDA device"):
            resolve_device("cuda:0")
