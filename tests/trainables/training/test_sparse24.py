"""2:4 semi-structured sparsity: the mask, the device check, and (with a GPU) the sparse kernels."""

import copy
import itertools

import pytest
import torch

from prunetune.errors import DeviceError
from prunetune.metrics import SPARSE24_LAYERS
from prunetune.trainables.families.compaction import load_compacted
from prunetune.trainables.measure.size import prunable_linears
from prunetune.trainables.training.precision import (
    check_inference_precision,
    prepare_for_inference_precision,
    semi_structured_mask,
    semi_structured_shape_ok,
    sparse24_linears,
    to_inference_precision,
)
from prunetune.trainables.trial import run_trial
from tests.models import tiny_classifier

CPU = torch.device("cpu")


def ampere_or_newer() -> bool:
    return torch.cuda.is_available() and torch.cuda.get_device_capability() >= (8, 0)


def test_mask_keeps_the_two_largest_of_every_four_inputs():
    weight = torch.randn(6, 16)
    mask = semi_structured_mask(weight)
    groups = mask.reshape(6, 4, 4)
    assert (groups.sum(dim=-1) == 2).all()
    magnitudes = weight.abs().reshape(6, 4, 4)
    for row, group in itertools.product(range(6), range(4)):
        kept, dropped = magnitudes[row, group][groups[row, group]], magnitudes[row, group][~groups[row, group]]
        assert kept.min() >= dropped.max()


def test_mask_needs_inputs_in_fours():
    with pytest.raises(ValueError, match="divisible by 4"):
        semi_structured_mask(torch.randn(4, 6))


def test_kernel_shape_rules():
    assert semi_structured_shape_ok((32, 64), cusparselt=False)
    assert not semi_structured_shape_ok((32, 32), cusparselt=False)
    assert semi_structured_shape_ok((16, 16), cusparselt=True)
    assert not semi_structured_shape_ok((16, 24), cusparselt=True)


def test_pruning_for_sparse24_halves_every_convertible_linear():
    model = tiny_classifier(hidden=64, heads=4, ffn=128)
    metrics = prepare_for_inference_precision(model, "sparse24")
    linears = sparse24_linears(model)
    assert metrics == {SPARSE24_LAYERS: len(linears)} and len(linears) == len(prunable_linears(model)) == 12
    for linear in linears:
        assert (linear.weight.ne(0).reshape(linear.out_features, -1, 4).sum(dim=-1) == 2).all()
    assert prepare_for_inference_precision(model, "fp32") == {}


def test_shapes_the_kernels_refuse_stay_dense():
    model = tiny_classifier(hidden=32, heads=4, ffn=64)  # 32 inputs: not a multiple of CUTLASS's 64
    if torch.backends.cusparselt.is_available():
        pytest.skip("cuSPARSELt accepts every shape of this model")
    query = model.bert.encoder.layer[0].attention.self.query.weight.clone()
    prepare_for_inference_precision(model, "sparse24")
    assert torch.equal(model.bert.encoder.layer[0].attention.self.query.weight, query)
    # only the FFN outputs (32 x 64) fit the kernels' 32 x 64 tile; they alone are 2:4-pruned
    assert sparse24_linears(model) == [layer.output.dense for layer in model.bert.encoder.layer]
    assert prepare_for_inference_precision(model, "sparse24") == {SPARSE24_LAYERS: 2}


@pytest.mark.skipif(ampere_or_newer(), reason="this machine can run 2:4 kernels")
def test_sparse24_without_an_ampere_gpu_is_a_clear_error():
    with pytest.raises(DeviceError, match=r"trial.inference_precision = 'sparse24' needs .*compute capability >= 8.0"):
        check_inference_precision("sparse24", CPU)
    with pytest.raises(DeviceError, match="runs on cpu"):
        to_inference_precision(tiny_classifier(), "sparse24", CPU)


@pytest.mark.skipif(ampere_or_newer(), reason="this machine can run 2:4 kernels")
def test_sparse24_trial_fails_before_loading_anything(tiny_config, tmp_path):
    with pytest.raises(DeviceError, match="sparse24"):
        run_trial(tiny_config(inference_precision="sparse24"), output_dir=tmp_path / "never")
    assert not (tmp_path / "never").exists()


@pytest.mark.gpu
@pytest.mark.skipif(not ampere_or_newer(), reason="needs a CUDA GPU of compute capability >= 8.0")
def test_sparse24_serves_the_pruned_model_with_sparse_kernels():
    from torch.sparse import SparseSemiStructuredTensor

    cuda = torch.device("cuda")
    model = tiny_classifier(hidden=128, heads=4, ffn=256).eval()
    prepare_for_inference_precision(model, "sparse24")  # the dense 2:4 model, as saved
    served = to_inference_precision(copy.deepcopy(model), "sparse24", cuda)
    reference = model.to(cuda, torch.float16)
    assert isinstance(served.bert.encoder.layer[0].attention.self.query.weight, SparseSemiStructuredTensor)
    input_ids = torch.randint(0, 50, (4, 64), device=cuda)
    with torch.inference_mode():
        expected = reference(input_ids=input_ids).logits.float()
        actual = served(input_ids=input_ids).logits.float()
    assert torch.allclose(expected, actual, atol=2e-2)


@pytest.mark.gpu
@pytest.mark.skipif(not ampere_or_newer(), reason="needs a CUDA GPU of compute capability >= 8.0")
def test_sparse24_trial_measures_the_sparse_model(tiny_config, tmp_path):
    from prunetune import metrics as M

    # Dense (sparsity 0): each layer's FFN output (32 x 64) fits the tile of both backends.
    config = tiny_config(inference_precision="sparse24", device="cuda", sparsity=0.0)
    metrics = run_trial(config, output_dir=tmp_path)
    assert M.missing_final_keys(metrics) == []
    saved = load_compacted(tmp_path / "model")
    converted = sparse24_linears(saved)
    assert metrics[SPARSE24_LAYERS] == len(converted) >= 2
    for linear in converted:  # the saved model is the 2:4 model that was measured
        assert (linear.weight.ne(0).reshape(linear.out_features, -1, 4).sum(dim=-1) <= 2).all()
    assert metrics[M.SPARSITY] > 0.0  # the 2:4 zeros of the survivors count
