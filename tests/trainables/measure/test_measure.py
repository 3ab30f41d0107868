"""Latency, quality, size and emissions measurement (prunetune.trainables.measure)."""

from __future__ import annotations

import contextlib
import logging
import math
import time
import warnings
from types import SimpleNamespace

import pytest
import torch
import transformers
from torch import nn

from prunetune.errors import DataError, TrialError
from prunetune.trainables.measure import latency as measure
from prunetune.trainables.measure.energy import EmissionsMeter
from prunetune.trainables.measure.latency import Latency, measure_latency, summarise
from prunetune.trainables.measure.quality import Quality, evaluate, predict_logits
from prunetune.trainables.measure.size import count_params

# Figures of time and energy: run alone, never beside another test process (`make test`).
pytestmark = pytest.mark.serial

CPU = torch.device("cpu")


def tiny_bert(layers: int = 2) -> transformers.BertForSequenceClassification:
    torch.manual_seed(0)
    config = transformers.BertConfig(
        vocab_size=100,
        hidden_size=32,
        num_hidden_layers=layers,
        num_attention_heads=4,
        intermediate_size=64,
        num_labels=3,
    )
    return transformers.BertForSequenceClassification(config)


def _latency(model: nn.Module, **overrides) -> Latency:
    settings = dict(batch_size=2, seq_len=16, vocab_size=100, device=CPU, min_run_time=0.1)
    return measure_latency(model, **{**settings, **overrides})


# --------------------------------------------------------------------------- latency


def test_latency_of_a_tiny_bert():
    model = tiny_bert().train()
    latency = _latency(model)
    assert 0 < latency.median_ms <= latency.p95_ms
    assert latency.runs >= 5
    assert latency.forwards_per_run >= 1
    assert model.training, "the model's mode is restored after timing"


def test_a_deeper_model_is_slower():
    shallow, deep = _latency(tiny_bert(2)), _latency(tiny_bert(8))
    # 4x the layers; the embeddings and classifier are shared costs, so expect well over 1.2x.
    assert deep.median_ms > 1.2 * shallow.median_ms


class Sleeper(nn.Module):
    """A model slow enough that one blocked_autorange yields only a run or two."""

    def forward(self, input_ids, attention_mask):
        time.sleep(0.01)
        return SimpleNamespace(logits=torch.zeros(len(input_ids), 2))


def test_a_slow_model_still_gets_enough_runs_for_a_percentile():
    latency = _latency(Sleeper(), min_run_time=0.01)
    assert latency.runs >= measure.MIN_LATENCY_RUNS
    assert latency.forwards_per_run == 1
    assert 10 <= latency.median_ms <= latency.p95_ms


class SometimesSlow(nn.Module):
    """10 ms per forward, 60 ms every fourth: the median stays near 10 ms, the mean does not."""

    def __init__(self):
        super().__init__()
        self.calls = 0

    def forward(self, input_ids, attention_mask):
        self.calls += 1
        time.sleep(0.06 if self.calls % 4 == 0 else 0.01)
        return SimpleNamespace(logits=torch.zeros(len(input_ids), 2))


def test_latency_is_the_median_and_p95_is_the_tail():
    latency = _latency(SometimesSlow(), min_run_time=0.2)
    assert 9.5 <= latency.median_ms < 15  # the mean would be about 22 ms
    assert latency.p95_ms > 50  # the slow calls are the tail


def test_summary_statistics_of_known_times():
    times = [0.001] * 19 + [0.1]
    summary = summarise(times)
    assert summary.median_ms == pytest.approx(1.0)
    assert summary.p95_ms == pytest.approx(1.0 + 0.05 * 99.0)  # linear interpolation between 1 ms and 100 ms
    assert summary.runs == 20


def test_latency_keeps_dtype_and_thread_count():
    model = tiny_bert().to(torch.bfloat16)
    threads = torch.get_num_threads()
    latency = _latency(model, threads=1)
    assert latency.median_ms > 0
    assert next(model.parameters()).dtype == torch.bfloat16
    assert torch.get_num_threads() == threads


def test_latency_inputs_are_seeded_token_ids():
    first = measure.latency_inputs(batch_size=3, seq_len=7, vocab_size=11, device=CPU)
    second = measure.latency_inputs(batch_size=3, seq_len=7, vocab_size=11, device=CPU)
    assert torch.equal(first["input_ids"], second["input_ids"])
    assert first["input_ids"].shape == (3, 7) and int(first["input_ids"].max()) < 11
    assert first["attention_mask"].dtype == torch.long and bool(first["attention_mask"].all())


# --------------------------------------------------------------------------- quality


class FixedLogits(nn.Module):
    """Returns a stored row of logits per example; the example's index is its first token."""

    def __init__(self, logits: torch.Tensor):
        super().__init__()
        self.register_buffer("table", logits)
        self.seen_training = []

    def forward(self, input_ids, attention_mask, token_type_ids=None):
        self.seen_training.append(self.training)
        return SimpleNamespace(logits=self.table[input_ids[:, 0]])


def _encodings(n: int) -> dict[str, torch.Tensor]:
    ids = torch.arange(n).unsqueeze(1).repeat(1, 4)
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids), "token_type_ids": torch.zeros_like(ids)}


def _one_hot_logits(predictions: list[int], num_labels: int) -> torch.Tensor:
    logits = torch.zeros(len(predictions), num_labels, dtype=torch.float64)
    logits[torch.arange(len(predictions)), torch.tensor(predictions)] = 5.0
    return logits


LABELS = [0, 1, 2, 2, 1, 0]
PREDICTIONS = [0, 1, 1, 2, 0, 0]
# Per class F1: 0 -> P 2/3, R 1 -> 0.8; 1 -> P 1/2, R 1/2 -> 0.5; 2 -> P 1, R 1/2 -> 2/3.
EXPECTED_F1 = (0.8 + 0.5 + 2 / 3) / 3


def test_evaluate_gives_exact_accuracy_and_macro_f1():
    model = FixedLogits(_one_hot_logits(PREDICTIONS, 3)).train()
    quality = evaluate(model, _encodings(6), LABELS, device=CPU, batch_size=4)
    assert quality == Quality(accuracy=4 / 6, f1_macro=pytest.approx(EXPECTED_F1), predictions=tuple(PREDICTIONS))
    assert model.seen_training == [False, False], "two batches, both in eval mode"
    assert model.training


def test_classes_absent_or_only_predicted_do_not_crash_or_warn():
    # Class 3 is neither true nor predicted; class 4 is predicted but never true.
    predictions = PREDICTIONS[:-1] + [4]
    model = FixedLogits(_one_hot_logits(predictions, 5))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        quality = evaluate(model, _encodings(6), LABELS, device=CPU)
    # Class 0 loses a true positive (P 1/2, R 1/2); class 4 scores 0 and joins the average.
    assert quality.accuracy == pytest.approx(3 / 6)
    assert quality.f1_macro == pytest.approx((0.5 + 0.5 + 2 / 3 + 0.0) / 4)


def test_predict_logits_is_float32_on_the_cpu():
    table = _one_hot_logits(PREDICTIONS, 3)
    logits = predict_logits(FixedLogits(table), _encodings(6), device=CPU, batch_size=5)
    assert logits.dtype == torch.float32 and logits.device.type == "cpu"
    assert torch.equal(logits, table.float())


def test_evaluate_runs_batches_under_the_given_autocast():
    entered = []

    @contextlib.contextmanager
    def recording_autocast():
        entered.append(True)
        yield

    class Reentrant:
        # A context manager object entered once per batch, like torch.autocast.
        def __enter__(self):
            self._inner = recording_autocast()
            return self._inner.__enter__()

        def __exit__(self, *exc):
            return self._inner.__exit__(*exc)

    evaluate(FixedLogits(_one_hot_logits(PREDICTIONS, 3)), _encodings(6), LABELS, device=CPU, batch_size=2, autocast=Reentrant())
    assert len(entered) == 3


def test_evaluate_a_bert_under_bf16_autocast():
    model = tiny_bert()
    encodings = {"input_ids": torch.randint(0, 100, (5, 8)), "attention_mask": torch.ones(5, 8, dtype=torch.long)}
    quality = evaluate(
        model, encodings, [0, 1, 2, 0, 1], device=CPU, autocast=torch.autocast("cpu", dtype=torch.bfloat16)
    )
    assert 0 <= quality.accuracy <= 1 and len(quality.predictions) == 5


def test_evaluate_refuses_mismatched_labels():
    with pytest.raises(DataError, match="6 encoded examples but 5 labels"):
        evaluate(FixedLogits(_one_hot_logits(PREDICTIONS, 3)), _encodings(6), LABELS[:5], device=CPU)


# --------------------------------------------------------------------------- size


def test_count_params_of_a_tiny_bert():
    model = tiny_bert()
    assert count_params(model) == sum(p.numel() for p in model.parameters()) > 0


@pytest.mark.filterwarnings("ignore")
def test_count_params_includes_dynamically_quantised_linears():
    model = tiny_bert()
    quantised = torch.ao.quantization.quantize_dynamic(tiny_bert(), {nn.Linear}, dtype=torch.qint8)
    assert sum(p.numel() for p in quantised.parameters()) < count_params(model)
    assert count_params(quantised) == count_params(model)


# --------------------------------------------------------------------------- emissions


def _busy(seconds: float) -> int:
    count, end = 0, time.perf_counter() + seconds
    while time.perf_counter() < end:
        count += sum(i * i for i in range(200))
    return count


def test_emissions_of_real_cpu_work_concurrent_trackers_and_csv(tmp_path):
    # Two trackers at once, as two trials on one machine: neither may refuse to start.
    with EmissionsMeter(measure_power_secs=0.2) as outer:
        with EmissionsMeter(measure_power_secs=0.2, output_dir=tmp_path / "cc") as inner:
            _busy(1.2)
    for meter in (outer, inner):
        assert meter.energy_kwh > 0 and meter.emissions_kg > 0
        assert math.isfinite(meter.energy_kwh) and math.isfinite(meter.emissions_kg)
    assert 1.1 <= inner.duration_s <= outer.duration_s
    assert (tmp_path / "cc" / "emissions.csv").is_file()
    assert not logging.getLogger("codecarbon").filters, "log filters are removed on exit"


def test_unknown_country_fails_before_the_work():
    with pytest.raises(TrialError, match="country_iso_code = 'XYZ'"):
        with EmissionsMeter(country_iso_code="XYZ"):
            pytest.fail("the block must not run")


class FakeTracker:
    """Stands in for OfflineEmissionsTracker; behaviour set per test."""

    energy, log_error, fail_start = 1e-6, None, False

    def __init__(self, **kwargs):
        self.kwargs = kwargs

    def start(self):
        if self.fail_start:
            raise RuntimeError("no power readings")
        if self.log_error:
            logging.getLogger("codecarbon").error(self.log_error)

    def stop(self):
        self.final_emissions_data = SimpleNamespace(energy_consumed=self.energy, emissions=self.energy * 0.4)


@pytest.fixture
def fake_tracker(monkeypatch):
    import codecarbon

    monkeypatch.setattr(codecarbon, "OfflineEmissionsTracker", FakeTracker)
    return FakeTracker


def test_tracker_settings(fake_tracker):
    meter = EmissionsMeter(country_iso_code="fra", measure_power_secs=0.5)
    with meter:
        kwargs = meter._tracker.kwargs
    assert kwargs["country_iso_code"] == "FRA" and kwargs["measure_power_secs"] == 0.5
    assert kwargs["allow_multiple_runs"] is True and kwargs["output_methods"] == []
    assert meter.energy_kwh == 1e-6 and meter.emissions_kg == pytest.approx(4e-7)


def test_a_tracker_that_cannot_start_is_a_trial_error(fake_tracker, monkeypatch):
    monkeypatch.setattr(fake_tracker, "fail_start", True)
    with pytest.raises(TrialError, match="failed to start: no power readings"):
        with EmissionsMeter():
            pass
    assert not logging.getLogger("codecarbon").filters


def test_codecarbon_errors_are_a_trial_error(fake_tracker, monkeypatch):
    monkeypatch.setattr(fake_tracker, "log_error", "Unable to read power")
    with pytest.raises(TrialError, match="errors during start: Unable to read power"):
        with EmissionsMeter():
            pass


def test_zero_energy_is_a_trial_error_not_a_zero(fake_tracker, monkeypatch):
    monkeypatch.setattr(fake_tracker, "energy", 0.0)
    with pytest.raises(TrialError, match=r"energy_kwh = 0.0.*expected both > 0"):
        with EmissionsMeter():
            pass


def test_the_block_exception_is_not_hidden(fake_tracker):
    with pytest.raises(KeyError, match="inside"):
        with EmissionsMeter():
            raise KeyError("inside")
