"""The search's summary run in W&B, and exported models as W&B artifacts.

The summary run (``job_type="summary"``, in the search's group beside the per-trial runs)
holds:

* ``hypervolume`` against the number of finished trials (a native W&B line chart);
* ``results``: every trial (configuration, metrics, status, on_front, knee) as a table;
* ``pareto``: the non-dominated trials as a table;
* ``scatter/<y>_vs_<x>``: a ``wandb.plot.scatter`` of each pair of objectives;
* ``parallel_coordinates`` and ``front_3d``: the plotly figures (``wandb.Plotly``);
* ``plots/<name>``: the PNG plots as images;
* in its summary: the hypervolume, the front size, the knee and the teacher's metrics.

W&B's own parallel-coordinates panel also works across the per-trial runs of the group,
whose config and summary hold every searched key and metric.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from prunetune import metrics as M
from prunetune.analysis import runs as R
from prunetune.analysis.front import KNEE, ON_FRONT, FrontAnalysis
from prunetune.analysis.runs import RunData
from prunetune.analysis.wandb_settings import WandbSettings


@dataclass(frozen=True)
class WandbRecord:
    """Where a logged run went: its local folder, its URL (online) or the command that uploads it."""

    mode: str
    local_dir: Path | None
    url: str | None

    def where(self) -> str:
        if self.url:
            return self.url
        return f"{self.local_dir} (offline; upload with: wandb sync {self.local_dir})"


def log_summary_run(run: RunData, analysis: FrontAnalysis, plots: list[Path], settings: WandbSettings) -> WandbRecord:
    """Log the summary run of ``run`` (see module docs) and finish it."""
    import wandb

    # Named after the run directory: beside trials named by id, "summary" alone says which search nothing.
    with wandb.init(**settings.init_kwargs(name=run.name, job_type="summary", config=run.config)) as wb_run:
        for _, row in analysis.history.iterrows():
            wb_run.log({"hypervolume": row["hypervolume"]}, step=int(row["trials"]))
        wb_run.log(_summary_payload(run, analysis, plots, wandb))
        wb_run.summary.update(summary_values(run, analysis))
        record = _record(wb_run, settings)
    return record


def _summary_payload(run: RunData, analysis: FrontAnalysis, plots: list[Path], wandb) -> dict[str, Any]:
    from prunetune.analysis.plots import (
        front_figure,
        objective_pairs,
        parallel_coordinates,
    )

    finished = wandb.Table(dataframe=table_frame(run, analysis.trials))
    payload: dict[str, Any] = {
        "results": wandb.Table(dataframe=table_frame(run, results_with_front(run, analysis))),
        "pareto": wandb.Table(dataframe=table_frame(run, analysis.front)),
        "parallel_coordinates": wandb.Plotly(parallel_coordinates(run, analysis)),
        "front_3d": wandb.Plotly(front_figure(run, analysis)),
    }
    for x, y in objective_pairs(analysis.objectives):
        payload[f"scatter/{y}_vs_{x}"] = wandb.plot.scatter(finished, x, y, title=f"{y} vs {x} (finished trials)")
    for path in plots:
        if path.suffix == ".png":
            payload[f"plots/{path.stem}"] = wandb.Image(str(path), caption=path.stem)
    return payload


def results_with_front(run: RunData, analysis: FrontAnalysis) -> pd.DataFrame:
    """Every trial (errored ones too), with ``on_front``/``knee`` flags from the analysis."""
    flags = analysis.trials.set_index(R.TRIAL_ID)[[ON_FRONT, KNEE]]
    table = run.trials.join(flags, on=R.TRIAL_ID)
    return table.assign(**{ON_FRONT: table[ON_FRONT].fillna(False).astype(bool),
                           KNEE: table[KNEE].fillna(False).astype(bool)})


def table_frame(run: RunData, table: pd.DataFrame) -> pd.DataFrame:
    """The columns worth a W&B table, with types W&B infers cleanly (text config, float metrics)."""
    metric_columns = [k for k in (*M.ALL_METRIC_KEYS, *M.UNCERTAINTY_METRICS) if k in table]
    flags = [c for c in (ON_FRONT, KNEE) if c in table]
    meta = [c for c in (R.STATUS, R.ERROR, R.WALL_SECONDS, R.NODE_ID) if c in table]
    frame = table[[R.TRIAL_ID, *run.config_columns, *metric_columns, *flags, *meta]].copy()
    for column in metric_columns:
        frame[column] = frame[column].astype(float)
    for column in run.config_columns + [c for c in meta if c != R.WALL_SECONDS]:
        frame[column] = frame[column].map(_cell)
    return frame.reset_index(drop=True)


def summary_values(run: RunData, analysis: FrontAnalysis) -> dict[str, Any]:
    values: dict[str, Any] = {
        "hypervolume": analysis.hypervolume,
        "finished_trials": len(analysis.trials),
        "errored_trials": len(run.errored),
        "front_size": int(analysis.trials[ON_FRONT].sum()),
        "knee_trial": analysis.knee_id,
        "objectives": ", ".join(f"{k} ({d})" for k, d in analysis.objectives.items()),
    }
    values.update({f"teacher/{k}": v for k, v in run.teacher.metrics.items()})
    values.update(_knee_quality(run, analysis))
    from prunetune.analysis.fidelity import fidelity, notes

    found = fidelity(run)
    values.update({"latency_retimed_trials": len(found.retimed), "latency_flagged_trials": ", ".join(found.flagged),
                   "energy_estimated": found.energy_estimated, "measurement_notes": " ".join(notes(run))})
    return values


def _knee_quality(run: RunData, analysis: FrontAnalysis) -> dict[str, Any]:
    """The knee's headline drop with its interval, on the evaluation split and, marked as the unbiased
    figure, on the held-out test split."""
    from prunetune.analysis.uncertainty import headline_of

    knee = analysis.trials[analysis.trials[R.TRIAL_ID] == analysis.knee_id]
    if knee.empty:
        return {}
    row = knee.iloc[0]
    drop = M.drop_key(headline_of(run))
    keys = [drop, *M.interval_keys(drop)]
    held_out = M.held_out_key(drop)
    keys += [held_out, *M.interval_keys(held_out)]
    values = {f"knee/{key}": float(row[key]) for key in keys if key in row and row[key] == row[key]}
    if f"knee/{held_out}" in values:
        values["knee/unbiased"] = f"{held_out}: on the held-out {M.HELD_OUT_SPLIT} split, never ranked on"
    return values


def log_model_artifact(export_dir: Path, *, trial_id: str, settings: WandbSettings,
                       metadata: dict[str, Any]) -> WandbRecord:
    """Log an exported model directory as a W&B ``model`` artifact, from an ``export`` run."""
    import wandb

    name = f"{settings.group}-{trial_id}"
    with wandb.init(**settings.init_kwargs(name=f"export-{trial_id}", job_type="export",
                                            config={"trial_id": trial_id, **metadata})) as wb_run:
        artifact = wandb.Artifact(_artifact_name(name), type="model", metadata=_jsonable(metadata),
                                  description=f"prunetune export of trial {trial_id} of search {settings.group}")
        artifact.add_dir(str(export_dir))
        wb_run.log_artifact(artifact, aliases=["latest", trial_id])
        record = _record(wb_run, settings)
    return record


def _record(wb_run, settings: WandbSettings) -> WandbRecord:
    local = Path(wb_run.dir).parent if getattr(wb_run, "dir", None) else None
    url = wb_run.url if settings.mode == "online" else None
    return WandbRecord(mode=settings.mode, local_dir=local, url=url)


def _artifact_name(name: str) -> str:
    # Artifact names allow letters, digits, dashes, underscores and dots.
    return "".join(ch if ch.isalnum() or ch in "-_." else "-" for ch in name)


def _jsonable(values: dict[str, Any]) -> dict[str, Any]:
    return {k: (None if _missing(v) else v.item() if hasattr(v, "item") else v) for k, v in values.items()}


def _cell(value: Any) -> Any:
    """Numbers stay numbers, everything else becomes text, missing becomes None."""
    if _missing(value):
        return None
    return value if isinstance(value, (int, float)) else str(value)


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA
