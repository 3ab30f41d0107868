"""Plots of a run: each pair of objectives (PNG), the front in 3-D (HTML), the hypervolume curve.

matplotlib is used through its object API (``Figure``), never pyplot, so that drawing
files neither needs a display nor changes the caller's backend. plotly writes standalone
HTML whose plotly.js sits beside it (``plots/plotly.min.js``), so the pages open offline.
"""

from __future__ import annotations

from itertools import combinations
from pathlib import Path

import numpy as np
import pandas as pd

from prunetune import metrics as M
from prunetune.analysis import runs as R
from prunetune.analysis._format import direction_hint, format_value, label
from prunetune.analysis.front import KNEE, ON_FRONT, REFERENCE_POINT, FrontAnalysis
from prunetune.analysis.runs import RunData, TeacherReference
from prunetune.pareto import nondominated_mask

FRONT_COLOUR = "#1f77b4"
DOMINATED_COLOUR = "#b0b0b0"
KNEE_COLOUR = "#d62728"
TEACHER_COLOUR = "#222222"
#: Axes whose figures re-timing replaces: their label says where the figures come from.
LATENCY_KEYS = (M.LATENCY_MS, M.LATENCY_P95_MS, M.SPEEDUP)
MAX_POINT_LABELS = 15  # above this, trial ids clutter the figure


def write_plots(run: RunData, analysis: FrontAnalysis, out_dir: Path | None = None) -> list[Path]:
    """Every plot of the run, in ``RUN_DIR/plots/``; returns the files written."""
    out_dir = Path(out_dir or run.run_dir / R.PLOTS_DIR)
    out_dir.mkdir(parents=True, exist_ok=True)
    from prunetune.analysis.fidelity import fidelity

    source = fidelity(run).latency_source
    written = [
        pair_plot(analysis, run.teacher, x, y, out_dir / f"{y}_vs_{x}.png", latency_source=source)
        for x, y in objective_pairs(analysis.objectives)
    ]
    written.append(hypervolume_plot(analysis, out_dir / "hypervolume.png"))
    written.append(front_html(run, analysis, out_dir / "front.html"))
    written.append(parallel_coordinates_html(run, analysis, out_dir / "parallel_coordinates.html"))
    return written


def objective_pairs(objectives: dict[str, str]) -> list[tuple[str, str]]:
    """(x, y) for each pair of objectives; a maximised objective goes on y (accuracy vs latency)."""
    pairs = []
    for a, b in combinations(objectives, 2):
        swap = objectives[a] == "max" and objectives[b] == "min"
        pairs.append((b, a) if swap else (a, b))
    return pairs


# --------------------------------------------------------------------------- PNG


def pair_plot(analysis: FrontAnalysis, teacher: TeacherReference, x: str, y: str, path: Path, *,
              latency_source: str | None = None) -> Path:
    """Trials of one objective pair: the front highlighted, its 2-D staircase, knee and teacher.

    ``latency_source`` says, on a latency axis, where its figures come from.
    """
    from matplotlib.figure import Figure

    trials = analysis.trials
    figure = Figure(figsize=(7.5, 5.5), dpi=150, layout="constrained")
    axes = figure.add_subplot()
    dominated, front = trials[~trials[ON_FRONT]], trials[trials[ON_FRONT]]
    if len(dominated):
        axes.scatter(dominated[x], dominated[y], s=36, color=DOMINATED_COLOUR, edgecolor="white",
                     label=f"dominated trial ({len(dominated)})", zorder=2)
    _pair_staircase(axes, trials, x, y, analysis.objectives)
    axes.scatter(front[x], front[y], s=60, color=FRONT_COLOUR, edgecolor="black", linewidth=0.6,
                 label=f"on the Pareto front of all {len(analysis.objectives)} objectives ({len(front)})", zorder=3)
    knee = trials[trials[KNEE]]
    axes.scatter(knee[x], knee[y], s=240, facecolor="none", edgecolor=KNEE_COLOUR, linewidth=2,
                 marker="D", label=f"knee: trial {analysis.knee_id}", zorder=4)
    if len(front) <= MAX_POINT_LABELS:
        # Alternate above / below along x so that neighbouring ids do not print over each other.
        for rank, (_, row) in enumerate(front.sort_values(x).iterrows()):
            axes.annotate(row[R.TRIAL_ID], (row[x], row[y]), xytext=(5, 5 if rank % 2 == 0 else -11),
                          textcoords="offset points", fontsize=7, color="#333333")
    _teacher_marker(axes, teacher, trials, x, y)
    axes.set_xlabel(_axis_label(x, analysis.objectives[x], latency_source))
    axes.set_ylabel(_axis_label(y, analysis.objectives[y], latency_source))
    axes.set_title(f"{label(y)} vs {label(x)}: {len(trials)} finished trials, {len(front)} on the front")
    axes.grid(True, color="#e5e5e5", linewidth=0.8)
    axes.ticklabel_format(axis="both", style="sci", scilimits=(-3, 4), useMathText=True)
    axes.legend(loc="best", fontsize=8, framealpha=0.9, markerscale=0.7)
    figure.savefig(path)
    return path


def _axis_label(key: str, direction: str, latency_source: str | None) -> str:
    source = f"; {latency_source}" if latency_source and key in LATENCY_KEYS else ""
    return f"{label(key)}  ({direction_hint(direction)}{source})"


def _pair_staircase(axes, trials: pd.DataFrame, x: str, y: str, objectives: dict[str, str]) -> None:
    """The front of this pair alone, as a staircase (a point of the 3-D front may lie above it)."""
    values = trials[[x, y]].to_numpy(dtype=float)
    mask = nondominated_mask(values, [objectives[x], objectives[y]])
    points = values[mask][np.argsort(values[mask][:, 0])]
    if len(points) > 1:
        # The dominated region lies towards worse x: the boundary holds each y until the next x.
        step = "post" if objectives[x] == "min" else "pre"
        axes.step(points[:, 0], points[:, 1], where=step, color=FRONT_COLOUR, alpha=0.45,
                  linestyle="--", linewidth=1.2, label="front of this pair", zorder=1)


def _teacher_marker(axes, teacher: TeacherReference, trials: pd.DataFrame, x: str, y: str) -> None:
    """The dense teacher as a star; pinned to the edge, with its values, when far off the trials' range."""
    tx, ty = teacher.get(x), teacher.get(y)
    if not (np.isfinite(tx) and np.isfinite(ty)):
        return
    (px, x_side), (py, y_side) = _pinned(tx, trials[x]), _pinned(ty, trials[y])
    arrow = {("x", 1): ">", ("x", -1): "<", ("y", 1): "^", ("y", -1): "v"}
    marker = arrow[("x", x_side)] if x_side else arrow[("y", y_side)] if y_side else "*"
    far = marker != "*"
    axes.scatter([px], [py], marker=marker, s=90 if far else 160, color=TEACHER_COLOUR,
                 label="dense teacher" + (" (off scale, arrow points to it)" if far else ""), zorder=5)
    text = "dense teacher"
    if far:
        text += f"\n{label(x)} = {format_value(x, tx)}\n{label(y)} = {format_value(y, ty)}"
    axes.annotate(text, (px, py), xytext=(-10, -10), textcoords="offset points", ha="right", va="top",
                  fontsize=7, color=TEACHER_COLOUR)


def _pinned(value: float, column: pd.Series) -> tuple[float, int]:
    """(where to draw ``value``, side): side is +1/-1 when it lies far beyond the trials' range, then
    drawn 30% beyond it, else 0."""
    low, high = float(column.min()), float(column.max())
    span = (high - low) or abs(high) or 1.0
    if value > high + 1.5 * span:
        return high + 0.3 * span, 1
    if value < low - 1.5 * span:
        return low - 0.3 * span, -1
    return value, 0


def hypervolume_plot(analysis: FrontAnalysis, path: Path) -> Path:
    """Hypervolume of the front after each finished trial: how the search converged."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    history = analysis.history
    figure = Figure(figsize=(7.5, 4.5), dpi=150, layout="constrained")
    axes = figure.add_subplot()
    axes.step(history["trials"], history["hypervolume"], where="post", color=FRONT_COLOUR, linewidth=2)
    improved = history[history["hypervolume"].diff().fillna(history["hypervolume"]) > 1e-12]
    axes.scatter(improved["trials"], improved["hypervolume"], s=30, color=FRONT_COLOUR, zorder=3,
                 label="trial that grew the front")
    axes.set_xlabel("finished trials (in the order they finished)")
    axes.set_ylabel("hypervolume (normalised objectives)")
    m = len(analysis.objectives)
    axes.set_title(f"Hypervolume {analysis.hypervolume:.4f} after {len(history)} finished trials\n"
                   f"objectives scaled to [0, 1] over the trials, reference point {REFERENCE_POINT} in each: "
                   f"at most {REFERENCE_POINT}^{m} = {analysis.max_hypervolume:.3g}", fontsize=10)
    axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes.set_ylim(bottom=0)
    axes.grid(True, color="#e5e5e5", linewidth=0.8)
    axes.legend(loc="lower right", fontsize=8)
    figure.savefig(path)
    return path


# --------------------------------------------------------------------------- HTML


def front_html(run: RunData, analysis: FrontAnalysis, path: Path) -> Path:
    """Interactive scatter of the objectives (3-D for three or more); hover shows each configuration."""
    front_figure(run, analysis).write_html(path, include_plotlyjs="directory", full_html=True)
    return path


def front_figure(run: RunData, analysis: FrontAnalysis):
    """The plotly figure behind :func:`front_html` (the first three objectives as axes)."""
    import plotly.graph_objects as go

    keys = list(analysis.objectives)[:3]
    trials = analysis.trials
    groups = [
        ("dominated trial", trials[~trials[ON_FRONT]], dict(size=4, color=DOMINATED_COLOUR, opacity=0.7)),
        ("on the Pareto front", trials[trials[ON_FRONT] & ~trials[KNEE]], dict(size=6, color=FRONT_COLOUR)),
        (f"knee: trial {analysis.knee_id}", trials[trials[KNEE]], dict(size=9, color=KNEE_COLOUR, symbol="diamond")),
    ]
    figure = go.Figure()
    for name, rows, marker in groups:
        figure.add_trace(_scatter(go, keys, rows, name, marker, hover_text(run, rows, analysis.objectives)))
    teacher = pd.DataFrame([{k: run.teacher.get(k) for k in keys}])
    if teacher.notna().all(axis=None):
        figure.add_trace(_scatter(go, keys, teacher, "dense teacher", dict(size=7, color=TEACHER_COLOUR, symbol="x"),
                                  [_teacher_hover(run.teacher, analysis.objectives)]))
    from prunetune.analysis.fidelity import fidelity

    source = fidelity(run).latency_source
    titles = {f"{axis}axis": dict(title=_axis_label(k, analysis.objectives[k], source)) for axis, k in zip("xyz", keys)}
    layout = dict(scene=titles) if len(keys) == 3 else titles
    figure.update_layout(title=f"Pareto front of {run.name}: {int(trials[ON_FRONT].sum())} of {len(trials)} "
                               "finished trials (hover a point for its configuration)",
                         legend=dict(itemsizing="constant"), template="plotly_white", **layout)
    return figure


def _scatter(go, keys: list[str], rows: pd.DataFrame, name: str, marker: dict, text: list[str]):
    coordinates = {axis: rows[k].to_numpy() for axis, k in zip("xyz", keys)}
    kind = go.Scatter3d if len(keys) == 3 else go.Scatter
    return kind(mode="markers", name=name, marker=marker, text=text, hovertemplate="%{text}<extra></extra>",
                **coordinates)


def hover_text(run: RunData, rows: pd.DataFrame, objectives: dict[str, str]) -> list[str]:
    """One HTML block per trial: its id, objectives, key metrics and full configuration."""
    from prunetune import metrics as M

    metric_keys = list(dict.fromkeys([*objectives, M.ACCURACY_DROP, M.SPEEDUP, M.PARAMS]))
    texts = []
    for _, row in rows.iterrows():
        lines = [f"<b>trial {row[R.TRIAL_ID]}</b>"]
        lines += [f"{label(k)}: {format_value(k, row.get(k))}" for k in metric_keys if k in row]
        lines.append("<i>configuration</i>")
        lines += [f"{c}: {format_value(c, row[c])}" for c in run.config_columns]
        texts.append("<br>".join(lines))
    return texts


def _teacher_hover(teacher: TeacherReference, objectives: dict[str, str]) -> str:
    lines = ["<b>dense teacher</b>"] + [f"{label(k)}: {format_value(k, teacher.get(k))}" for k in objectives]
    return "<br>".join(lines)


def parallel_coordinates(run: RunData, analysis: FrontAnalysis):
    """A plotly parallel-coordinates figure: searched configuration on the left, objectives on the right."""
    import plotly.graph_objects as go

    trials = analysis.trials
    dimensions = [_dimension(trials[c], label(c)) for c in run.searched_columns]
    dimensions += [_dimension(trials[k], label(k)) for k in analysis.objectives]
    dimensions.append(dict(label="on front", values=trials[ON_FRONT].astype(int), tickvals=[0, 1],
                           ticktext=["no", "yes"]))
    first = next(iter(analysis.objectives))
    line = dict(color=trials[first], colorscale="Viridis", showscale=True,
                reversescale=analysis.objectives[first] == "min", colorbar=dict(title=label(first)))
    figure = go.Figure(go.Parcoords(line=line, dimensions=dimensions))
    figure.update_layout(title=f"{run.name}: configuration and objectives of {len(trials)} finished trials",
                         template="plotly_white")
    return figure


def parallel_coordinates_html(run: RunData, analysis: FrontAnalysis, path: Path) -> Path:
    parallel_coordinates(run, analysis).write_html(path, include_plotlyjs="directory", full_html=True)
    return path


def _dimension(column: pd.Series, name: str) -> dict:
    """A parcoords axis; text values (method, precision) become ticks of integer codes."""
    numeric = pd.to_numeric(column, errors="coerce")
    if numeric.notna().all():
        return dict(label=name, values=numeric.to_numpy(dtype=float))
    categories = sorted(column.astype(str).unique())
    codes = column.astype(str).map({c: i for i, c in enumerate(categories)})
    return dict(label=name, values=codes.to_numpy(), tickvals=list(range(len(categories))), ticktext=categories)
