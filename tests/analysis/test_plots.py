"""Plots are written, non-empty, and say what they show."""

from __future__ import annotations

import re
import struct

from prunetune import metrics as M
from prunetune.analysis import analyse, load_run
from prunetune.analysis import runs as R
from prunetune.analysis.plots import front_figure, objective_pairs, write_plots
from tests.analysis import synthetic as S

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _png_size(path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE
    return struct.unpack(">II", data[16:24])


def test_every_plot_is_written(run_dir):
    run = load_run(run_dir)
    files = write_plots(run, analyse(run))
    names = sorted(p.name for p in files)
    assert names == sorted([
        "accuracy_vs_latency_ms.png", "accuracy_vs_emissions_kg.png", "emissions_kg_vs_latency_ms.png",
        "hypervolume.png", "front.html", "parallel_coordinates.html",
    ])
    for path in files:
        assert path.parent == run_dir / R.PLOTS_DIR and path.stat().st_size > 5_000
        if path.suffix == ".png":
            width, height = _png_size(path)
            assert width >= 1000 and height >= 600
    assert (run_dir / R.PLOTS_DIR / "plotly.min.js").stat().st_size > 1_000_000  # pages open offline


def test_maximised_objectives_go_on_the_vertical_axis():
    assert objective_pairs(S.OBJECTIVES) == [
        (M.LATENCY_MS, M.ACCURACY), (M.EMISSIONS_KG, M.ACCURACY), (M.LATENCY_MS, M.EMISSIONS_KG),
    ]


def test_front_hover_shows_each_trials_configuration(run_dir):
    run = load_run(run_dir)
    analysis = analyse(run)
    figure = front_figure(run, analysis)
    traces = {trace.name: trace for trace in figure.data}
    assert set(traces) == {"dominated trial", "on the Pareto front", f"knee: trial {analysis.knee_id}", "dense teacher"}
    assert all(trace.type == "scatter3d" for trace in figure.data)
    hover = list(traces["on the Pareto front"].text)
    assert len(hover) == len(analysis.front) - 1
    assert all("trial.sparsity:" in text and "trial.precision:" in text and "accuracy:" in text for text in hover)
    html = (run_dir / R.PLOTS_DIR / "front.html")
    write_plots(run, analysis)
    page = html.read_text()
    assert "plotly.min.js" in page and analysis.knee_id in page


def test_two_objectives_give_a_flat_scatter(tmp_path):
    rows = [S.trial_row(f"t{i}", accuracy=acc, latency_ms=lat, emissions_kg=1e-5, finished_at=i)
            for i, (acc, lat) in enumerate([(0.9, 9.0), (0.85, 5.0), (0.8, 6.0)])]
    config = S.run_config(objectives={M.ACCURACY: "max", M.LATENCY_MS: "min"})
    run = load_run(S.write_run(tmp_path / "flat", rows, config))
    analysis = analyse(run)
    files = write_plots(run, analysis)
    assert sorted(p.name for p in files if p.suffix == ".png") == ["accuracy_vs_latency_ms.png", "hypervolume.png"]
    assert {trace.type for trace in front_figure(run, analysis).data} == {"scatter"}


def test_parallel_coordinates_name_the_searched_keys(run_dir):
    run = load_run(run_dir)
    write_plots(run, analyse(run))
    page = (run_dir / R.PLOTS_DIR / "parallel_coordinates.html").read_text()
    labels = re.findall(r'"label":"([^"]+)"', page)
    assert {"sparsity", "block_size", "precision", "accuracy", "latency (ms)", "on front"} <= set(labels)
    assert '"ticktext":["bf16","fp32"]' in page  # text values become labelled ticks
