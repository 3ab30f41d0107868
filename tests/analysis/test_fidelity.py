"""Every view says where its latency figures come from, flags the ones re-timing moved, and
says when energy is an estimate."""

from io import StringIO

from rich.console import Console

from prunetune import metrics as M
from prunetune.analysis import load_run, summarize_run
from prunetune.analysis.fidelity import fidelity, notes
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
