"""What a user sees at the end of a search and with ``prunetune report``: the front as a table,
the files written, and where the W&B runs are."""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from prunetune import metrics as M
from prunetune.analysis import runs as R
from prunetune.analysis._format import format_value
from prunetune.analysis.front import KNEE, REFERENCE_POINT, FrontAnalysis, analyse
from prunetune.analysis.runs import RunData, load_run
from prunetune.analysis.uncertainty import headline_of, uncertainty_notes, with_interval
from prunetune.analysis.wandb_settings import (
    WANDB_SUBDIR,
    WandbSettings,
    offline_run_dirs,
    sync_command,
    wandb_settings,
)

_EXTRA_METRICS = (M.SPEEDUP, M.PARAMS)
_MAX_ERRORS_SHOWN = 5


@dataclass(frozen=True)
class RunSummary:
    """The outcome of :func:`summarize_run`."""

    run: RunData
    analysis: FrontAnalysis
    files: list[Path]
    wandb_settings: WandbSettings
    wandb_record: object | None = None

    @property
    def front(self) -> pd.DataFrame:
        return self.analysis.front

    @property
    def hypervolume(self) -> float:
        return self.analysis.hypervolume

    @property
    def knee_id(self) -> str:
        return self.analysis.knee_id


def summarize_run(run_dir: str | Path, *, wandb: bool = True, console=None) -> RunSummary:
    """Load the run, write ``pareto.parquet`` and ``plots/``, log the W&B summary run, print the front.

    ``wandb=False`` skips the W&B summary run (as does a config or environment that turns
    W&B off; see :mod:`prunetune.analysis.wandb_settings`).
    """
    from prunetune.analysis.plots import write_plots

    run = load_run(run_dir)
    analysis = analyse(run)
    files = [write_pareto(run, analysis), *write_plots(run, analysis)]
    # The settings of the search itself (to say where its runs are), whether or not this call logs.
    settings = wandb_settings(run.config, run.run_dir)
    record = None
    if wandb and settings.enabled:
        from prunetune.analysis.wandb_log import log_summary_run

        record = log_summary_run(run, analysis, files, settings)
    summary = RunSummary(run, analysis, files, settings, record)
    print_summary(summary, console=console)
    return summary


def write_pareto(run: RunData, analysis: FrontAnalysis) -> Path:
    """``pareto.parquet``: the non-dominated trials, best first, with every column and a ``knee`` flag."""
    path = run.run_dir / R.PARETO_FILE
    analysis.front.reset_index(drop=True).to_parquet(path)
    return path


# --------------------------------------------------------------------------- printing


def print_summary(summary: RunSummary, *, console=None) -> None:
    console = console or make_console()
    run, analysis = summary.run, summary.analysis
    console.print(front_table(run, analysis))
    _print_notes(console, run, analysis)
    _print_errors(console, run)
    _print_files(console, run, summary.files)
    _print_wandb(console, summary)
    _print_next_steps(console, run, analysis)


def front_table(run: RunData, analysis: FrontAnalysis):
    """The front as a rich table: searched configuration and metrics, best first; the teacher last."""
    from rich.table import Table

    config_columns = run.searched_columns
    metric_columns = _metric_columns(run, analysis, analysis.front)
    table = Table(title=_title(run, analysis), title_justify="left", caption=_caption(analysis), caption_justify="left")
    table.add_column("trial", no_wrap=True)
    for column in config_columns:
        table.add_column(column.removeprefix(R.CONFIG_PREFIX), style="cyan")
    for key in metric_columns:
        table.add_column(_header(key, analysis.objectives), justify="right", no_wrap=_shows_interval(key),
                         style="bold" if key in analysis.objectives else None)
    for _, row in analysis.front.iterrows():
        name = f"{row[R.TRIAL_ID]} ◆ knee" if row[KNEE] else str(row[R.TRIAL_ID])
        table.add_row(name, *(format_value(c, row[c]) for c in config_columns),
                      *(_cell(k, row) for k in metric_columns), style="green" if row[KNEE] else None)
    table.add_section()
    table.add_row("dense teacher", *("" for _ in config_columns),
                  *(format_value(k, run.teacher.metrics.get(k)) for k in metric_columns), style="dim italic")
    return table


def _metric_columns(run: RunData, analysis: FrontAnalysis, rows: pd.DataFrame) -> list[str]:
    """Objectives, the headline drop (with its interval), its held-out figure once measured, and extras."""
    drop = M.drop_key(headline_of(run))
    held_out = M.held_out_key(drop)
    columns = [*analysis.objectives, drop]
    if held_out in rows and rows[held_out].notna().any():
        columns.append(held_out)
    return list(dict.fromkeys([*columns, *_EXTRA_METRICS]))


def _shows_interval(key: str) -> bool:
    """Drops carry their 95% interval in tables: whether a drop is real is what the interval tells."""
    return M.base_metric(key).endswith("_drop")


def _cell(key: str, row) -> str:
    """A metric cell; a drop shows its 95% interval (``value [low, high]``)."""
    return with_interval(key, row) if _shows_interval(key) else format_value(key, row.get(key))


def _title(run: RunData, analysis: FrontAnalysis) -> str:
    front = int(analysis.trials["on_front"].sum())
    errored = f", {len(run.errored)} errored" if len(run.errored) else ""
    stopped = f", {len(run.stopped)} stopped early" if len(run.stopped) else ""
    return (f"Pareto front of {run.name}: {front} of {len(analysis.trials)} finished trials{errored}{stopped} "
            f"(from {run.source})")


def _caption(analysis: FrontAnalysis) -> str:
    m = len(analysis.objectives)
    return (f"hypervolume {analysis.hypervolume:.4f} of at most {analysis.max_hypervolume:.3g} (objectives normalised "
            f"to [0, 1] over the finished trials, reference point {REFERENCE_POINT}^{m}); "
            "◆ knee = closest to the ideal point; sorted best first by "
            f"{next(iter(analysis.objectives))}")


def _header(key: str, objectives: dict[str, str]) -> str:
    # Metric keys, not prose: compact, and the names the pick options and results.parquet use.
    direction = objectives.get(key, M.METRIC_DIRECTIONS.get(key.removesuffix(M.TEST_SUFFIX)))
    unbiased = " (held out)" if key.endswith(M.TEST_SUFFIX) else ""
    return f"{key} {'↑' if direction == 'max' else '↓'}{unbiased}"


def make_console():
    """A rich console; when the output is not a terminal (a log, a pipe), wide enough for the tables."""
    from rich.console import Console

    console = Console()
    return console if console.is_terminal else Console(width=220)


def _print_notes(console, run: RunData, analysis: FrontAnalysis) -> None:
    from prunetune.analysis.fidelity import notes

    for line in notes(run):
        console.print(line, markup=False, soft_wrap=True, style="yellow" if "more than 10%" in line else None)
    for line in uncertainty_notes(run, analysis.front):
        console.print(line, markup=False, soft_wrap=True)


def _print_errors(console, run: RunData) -> None:
    errored = run.errored
    if errored.empty:
        return
    console.print(f"[yellow]{len(errored)} trial(s) did not finish and are not on the front:[/yellow]")
    for _, row in errored.head(_MAX_ERRORS_SHOWN).iterrows():
        console.print(f"  {row[R.TRIAL_ID]}: {row.get(R.ERROR) or row[R.STATUS]}", markup=False, soft_wrap=True)
    if len(errored) > _MAX_ERRORS_SHOWN:
        console.print(f"  ... and {len(errored) - _MAX_ERRORS_SHOWN} more (see {R.RESULTS_FILE})", markup=False)


def _print_files(console, run: RunData, files: list[Path]) -> None:
    from rich.markup import escape

    console.print(f"\n[bold]Files[/bold] in {escape(str(run.run_dir))}:", soft_wrap=True)
    for path in files:
        console.print(f"  {_relative(path, run.run_dir)}", markup=False, soft_wrap=True)


def _print_wandb(console, summary: RunSummary) -> None:
    settings, run_dir = summary.wandb_settings, summary.run.run_dir
    console.print("\n[bold]W&B[/bold]:", end=" ")
    if summary.wandb_record is not None and getattr(summary.wandb_record, "url", None):
        console.print(f"summary run {summary.wandb_record.url} (group {settings.group!r}, project "
                      f"{settings.project!r})", markup=False, soft_wrap=True)
        return
    offline = offline_run_dirs(run_dir)
    if offline:
        console.print(f"{len(offline)} offline run(s) in {run_dir / WANDB_SUBDIR} (group {settings.group!r}); "
                      "upload them with:", markup=False, soft_wrap=True)
        console.print(f"  {sync_command(run_dir)}", markup=False, soft_wrap=True)
    elif online := sorted((run_dir / WANDB_SUBDIR).glob("run-*")):
        console.print(f"{len(online)} run(s) logged online to project {settings.project!r}, group "
                      f"{settings.group!r} (local copies in {run_dir / WANDB_SUBDIR})", markup=False, soft_wrap=True)
    elif not settings.enabled:
        console.print(f"off ({settings.reason})", markup=False, soft_wrap=True)
    else:
        console.print(f"no runs in {run_dir / WANDB_SUBDIR} ({settings.mode}, project {settings.project!r}); "
                      "`prunetune report RUN_DIR --wandb` logs a summary run", markup=False, soft_wrap=True)


def _print_next_steps(console, run: RunData, analysis: FrontAnalysis) -> None:
    """What to do with the front: the command that explains the choice, the one that exports it, the plots."""
    from prunetune.analysis.pick import pick_trial
    from prunetune.errors import PrunetuneError

    try:
        pick = pick_trial(run, analysis)
    except PrunetuneError:  # constraints on a metric this run lacks: pick says so itself
        pick = None
    where = shlex.quote(_as_typed(run.run_dir))
    lines = ["", "Next:"]
    if pick is not None and pick.found:
        lines += [f"  prunetune pick {where}      # why {pick.trial_id}: the {pick.prefer} of the front within "
                  f"{pick.constraints_source.replace('config.yaml ', '')}",
                  f"  prunetune export {where} --trial {pick.trial_id}      # a ready-to-serve model in "
                  f"{_as_typed(run.run_dir / R.EXPORTS_DIR / str(pick.trial_id))}"]
    else:
        lines += [f"  prunetune pick {where} --max-accuracy-drop X      # no finished trial meets "
                  "search.constraints; pick shows the closest ones"]
    plots = run.run_dir / R.PLOTS_DIR
    lines.append(f"  plots: {_as_typed(plots / 'front.html')} (interactive) and the PNGs beside it")
    for line in lines:
        console.print(line, markup=False, soft_wrap=True)


def _as_typed(path: Path) -> str:
    """``path`` relative to the working directory when it lies below it (as a user would type it)."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def _relative(path: Path, root: Path) -> str:
    try:
        return str(path.resolve().relative_to(root.resolve()))
    except ValueError:
        return str(path)


def print_pick(pick, run: RunData, analysis: FrontAnalysis, *, console=None) -> None:
    """The chosen trial and why, or the closest trials when none is feasible."""
    from prunetune.analysis.pick import VIOLATION, explain

    console = console or make_console()
    for line in explain(pick, analysis.objectives):
        console.print(line, markup=False, soft_wrap=True)
    if pick.found:
        console.print(trial_card(run, analysis, pick.trial))
    elif not pick.closest.empty:
        console.print(trials_table(run, analysis, pick.closest, title="Closest trials", extra=VIOLATION))


def trial_card(run: RunData, analysis: FrontAnalysis, trial: pd.Series):
    """One trial as a two-column table (configuration, then metrics beside the teacher's)."""
    from rich.table import Table

    table = Table(title=f"Picked: trial {trial[R.TRIAL_ID]}", title_justify="left")
    table.add_column("")
    table.add_column(f"trial {trial[R.TRIAL_ID]}", justify="right")
    table.add_column("dense teacher", justify="right", style="dim")
    for column in run.config_columns:
        table.add_row(column, format_value(column, trial.get(column)), "", style="cyan")
    table.add_section()
    for key in dict.fromkeys([*_metric_columns(run, analysis, trial.to_frame().T), *M.ALL_METRIC_KEYS]):
        if key in trial:
            table.add_row(_header(key, analysis.objectives), _cell(key, trial),
                          format_value(key, run.teacher.metrics.get(key)),
                          style="bold" if key in analysis.objectives else None)
    return table


def trials_table(run: RunData, analysis: FrontAnalysis, rows: pd.DataFrame, *, title: str, extra: str | None = None):
    """A few trials with every configuration key that varies and the main metrics."""
    from rich.table import Table

    config_columns = run.searched_columns
    metric_columns = _metric_columns(run, analysis, rows)
    table = Table(title=title, title_justify="left")
    table.add_column("trial", no_wrap=True)
    for column in config_columns:
        table.add_column(column.removeprefix(R.CONFIG_PREFIX), style="cyan")
    for key in metric_columns:
        table.add_column(_header(key, analysis.objectives), justify="right")
    if extra:
        table.add_column(f"{extra} (scaled)", justify="right", style="yellow")
    for _, row in rows.iterrows():
        cells = [*(format_value(c, row.get(c)) for c in config_columns), *(_cell(k, row) for k in metric_columns)]
        if extra:
            cells.append(f"{row.get(extra):.3f}")
        table.add_row(str(row[R.TRIAL_ID]), *cells)
    return table


def print_export(result, *, console=None) -> None:
    console = console or make_console()
    check = result.check
    console.print(f"Exported trial {result.trial_id} to {result.out_dir}:", markup=False, soft_wrap=True)
    for path in result.files:
        console.print(f"  {path.name}", markup=False, soft_wrap=True)
    console.print(f"Checked: loaded through pipeline(), it predicts what the trial's model predicts on {check.texts} "
                  f"texts (max |logit difference| {check.max_logit_difference:.1e}).", markup=False, soft_wrap=True)
    if check.measured_runtime is not None:
        from prunetune.trainables.runtimes import RUNTIMES

        runtime = RUNTIMES[check.measured_runtime]
        console.print(f"{runtime.label}: {', '.join(runtime.shipped_files)}, the {check.measured_precision} model the "
                      f"trial measured; it agrees with PyTorch on {check.runtime_agreement:.0%} of the sample texts.",
                      markup=False, soft_wrap=True)
    if check.onnx_max_difference is not None:
        console.print(f"ONNX: model.onnx matches PyTorch within {check.onnx_max_difference:.1e} (onnxruntime).",
                      markup=False, soft_wrap=True)
    from prunetune.analysis.export import shipped_modeling_file

    remote = ", trust_remote_code=True" if shipped_modeling_file(result.out_dir) else ""
    console.print(f'Use it: pipeline("text-classification", model="{result.out_dir}"{remote})', markup=False,
                  soft_wrap=True)
    if result.wandb is not None:
        console.print(f"W&B artifact (in run export-{result.trial_id}): {result.wandb.where()}", markup=False,
                      soft_wrap=True)
