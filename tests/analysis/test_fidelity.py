"""Every view says where its latency figures come from, flags the ones re-timing moved, and
says when energy is an estimate."""

from io import StringIO

from rich.console import Console

from prunetune import metrics as M
from prunetune.analysis import load_run, summarize_run
from prunetune.analysis.fidelity import fidelity, notes, table_agreement
from prunetune.search._retime import apply_retiming
from tests.analysis import synthetic as S


def measured_run(tmp_path):
    rows = []
    for i, (accuracy, latency, quiet) in enumerate([(0.93, 9.0, 6.0), (0.90, 6.0, 5.8), (0.85, 4.0, None)]):
        row = S.trial_row(f"t{i}", accuracy=accuracy, latency_ms=latency, emissions_kg=5e-5, finished_at=float(i))
        row[M.ENERGY_ESTIMATED] = 1.0
        row[M.LATENCY_NOISY] = 1.0 if i == 2 else 0.0
        rows.append(apply_retiming(row, {M.LATENCY_MS: quiet}) if quiet is not None else row)
    return S.write_run(tmp_path / "measured", rows, S.run_config(wandb={"enabled": False}))


def test_the_figures_are_described_once_for_every_view(tmp_path):
    run = load_run(measured_run(tmp_path))
    found = fidelity(run)
    assert found.retimed == ["t0", "t1"] and found.flagged == ["t0"] and found.noisy == ["t2"]
    assert found.energy_estimated
    text = " ".join(notes(run))
    assert "of 2 trial(s) were re-timed quietly" in text
    assert "moved the latency of t0 by more than 10%" in text
    assert "The latency of t2 stayed noisy" in text
    assert "Energy and emissions are estimates" in text


def test_the_report_and_the_plots_say_so(tmp_path):
    output = StringIO()
    summary = summarize_run(measured_run(tmp_path), wandb=False, console=Console(file=output, width=200))
    printed = output.getvalue()
    assert "re-timed quietly" in printed and "t0 by more than 10%" in printed
    assert summary.front.set_index("trial_id").loc["t0", M.LATENCY_MS] == 6.0  # the front uses the quiet figure


def test_a_run_timed_only_inside_the_search_says_that_too(tmp_path):
    rows = [S.trial_row("a", accuracy=0.9, latency_ms=5.0, emissions_kg=1e-5)]
    run = load_run(S.write_run(tmp_path / "plain", rows))
    assert fidelity(run).retimed == [] and "--retime" in notes(run)[0]


def test_the_latency_tables_agreement_is_given_per_runtime_and_precision(tmp_path):
    rows = []
    for i, (runtime, precision, predicted, measured, quiet) in enumerate([
        ("onnxruntime", "int8", 4.0, 3.6, False), ("onnxruntime", "int8", 2.0, 2.1, True),
        ("onnxruntime", "int8", 3.0, 3.0, True), ("torch", "fp32", 2.0, 1.0, False), ("torch", "fp32", None, 3.0, False),
    ]):
        row = S.trial_row(f"t{i}", accuracy=0.9 - i / 100, latency_ms=5.0 + i, emissions_kg=1e-5, finished_at=float(i))
        row.update({"trial.runtime": runtime, "trial.inference_precision": precision,
                    M.PREDICTED_SPEEDUP: predicted, M.SPEEDUP_SAME_RUNTIME: measured, M.RETIMED: quiet})
        rows.append(row)
    run = load_run(S.write_run(tmp_path / "tables", rows))
    found = {agreement.serving: agreement for agreement in table_agreement(run)}
    assert set(found) == {"onnxruntime int8", "torch fp32"}  # a trial without a prediction is left out
    assert found["onnxruntime int8"].median == 1.0 and len(found["onnxruntime int8"].quiet_ratios) == 2
    assert found["torch fp32"].ratios.tolist() == [0.5]
    text = " ".join(notes(run))
    assert "Latency table in onnxruntime int8: measured speedup_same_runtime over predicted_speedup " \
           "median 1.000 (0.900 to 1.050) over 3 trial(s); the 2 re-timed quietly median 1.025" in text
    assert "Latency table in torch fp32: measured speedup_same_runtime over predicted_speedup 0.500 over 1" in text


def test_a_run_without_table_predictions_says_nothing_of_tables(tmp_path):
    rows = [S.trial_row("a", accuracy=0.9, latency_ms=5.0, emissions_kg=1e-5)]
    run = load_run(S.write_run(tmp_path / "plain", rows))
    assert table_agreement(run) == [] and not any("Latency table" in line for line in notes(run))
