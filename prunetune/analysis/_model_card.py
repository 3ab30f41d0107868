"""The model card (README.md) of an exported model: metrics, configuration, place on the front."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from prunetune import metrics as M
from prunetune.analysis import runs as R
from prunetune.analysis._format import format_value, label
from prunetune.analysis.front import KNEE, ON_FRONT, REFERENCE_POINT, FrontAnalysis
from prunetune.analysis.runs import RunData
from prunetune.analysis.uncertainty import with_interval

_COST_METRICS = (M.LATENCY_MS, M.LATENCY_P95_MS, M.SPEEDUP, M.SPEEDUP_SAME_RUNTIME,
                 M.PARAMS, M.SPARSITY, M.HEADS_PRUNED, M.FFN_KEPT, M.EMISSIONS_KG, M.ENERGY_KWH, M.TRAIN_SECONDS)
#: What the card calls each task kind, and an example input of its pipeline.
_KIND_NAMES = {"classification": "text classifier", "regression": "text regressor (one score per input)",
               "token_classification": "token classifier (a tag per word)",
               "question_answering": "extractive question-answering model"}
_EXAMPLES = {
    "classification": '"Shares rose after the bank reported record profits."',
    "pairs": '{"text": "Shares rose after record profits.", "text_pair": "The bank did well this year."}',
    "regression": '"Shares rose after the bank reported record profits.", function_to_apply="none"',
    "token_classification": '"Shares in Barclays rose by 5% on Monday."',
    "question_answering": 'question="What rose?", context="Shares in the bank rose after record profits."',
}


def _task(run: RunData) -> tuple[str, bool]:
    """(task kind, whether it reads a second text) of the run's configuration."""
    task = run.config.get("task") or {}
    kind = task.get("kind") or "classification"
    return kind, kind == "question_answering" or task.get("text_pair_column") is not None


def _card_metrics(kind: str) -> tuple[str, ...]:
    return (*M.task_metric_keys(kind), *_COST_METRICS)


def model_card(run: RunData, analysis: FrontAnalysis, trial: pd.Series, out_dir: Path, *, check,
               labels: dict[int, str], why: list[str] | None = None) -> str:
    trial_id = str(trial[R.TRIAL_ID])
    sections = [
        _front_matter(run),
        f"# {run.name}: trial {trial_id}\n\n{_summary(run, trial)}",
        _metrics_section(run, trial, directory_name=out_dir.name),
        _front_section(analysis, trial_id, why),
        _configuration_section(run, trial),
        _labels_section(labels) if _task(run)[0] in ("classification", "token_classification") else "",
        _usage_section(out_dir, run),
        _checks_section(check, out_dir),
    ]
    return "\n\n".join(section for section in sections if section) + "\n"


def _pipeline_task(run: RunData) -> str:
    from prunetune.trainables.tasks import TASKS

    return TASKS[_task(run)[0]].pipeline_task


def _front_matter(run: RunData) -> str:
    pipeline_task = _pipeline_task(run)
    tags = ["prunetune", pipeline_task, "pruning", "knowledge-distillation"]
    lines = ["---", "library_name: transformers", f"pipeline_tag: {pipeline_task}", "tags:"]
    lines += [f"  - {tag}" for tag in tags]
    return "\n".join(lines + ["---"])


def _summary(run: RunData, trial: pd.Series) -> str:
    task, teacher = run.config.get("task") or {}, run.config.get("teacher") or {}
    method = trial.get("trial.method", "movement")
    return (
        f"A compressed {_KIND_NAMES[_task(run)[0]]}{' of sentence pairs' if _task(run) == ('classification', True) else ''} found by the prunetune search `{run.name}`: "
        f"the teacher `{teacher.get('model', 'unknown')}`, fine-tuned on `{task.get('dataset', 'unknown')}`, "
        f"was {method}-pruned to sparsity {format_value(M.SPARSITY, trial.get(M.SPARSITY))} while distilling "
        f"into it, then compacted: pruned attention heads and FFN neurons were removed, not just zeroed."
    )


def _metrics_section(run: RunData, trial: pd.Series, *, directory_name: str) -> str:
    rows = ["| metric | this model | dense teacher | meaning |", "| --- | ---: | ---: | --- |"]
    kind = _task(run)[0]
    for key in _card_metrics(kind):
        if key in trial:
            rows.append(f"| {label(key)} | {with_interval(key, trial)} | "
                        f"{format_value(key, run.teacher.metrics.get(key))} | "
                        f"{M.TASK_METRIC_DESCRIPTIONS[kind].get(key) or M.METRIC_DESCRIPTIONS[key]} |")
        if key == M.drop_key(M.headline_metric(kind)):
            rows += _held_out_rows(run, trial, kind)
    fixed = run.config.get("trial") or {}
    latency = fixed.get("latency") or {}
    note = (
        f"Task: {kind.replace('_', ' ')}; {', '.join(M.TASK_METRICS[kind])} are on the "
        f"`{(run.config.get('task') or {}).get('eval_split', 'validation')}` split of "
        f"`{(run.config.get('task') or {}).get('dataset', 'unknown')}`. "
        f"Latency: batch {trial.get('trial.latency.batch_size', latency.get('batch_size', '?'))}, sequence length "
        f"{trial.get('trial.latency.seq_len', latency.get('seq_len', '?'))}, at inference precision "
        f"`{trial.get('trial.inference_precision', fixed.get('inference_precision', 'fp32'))}`, "
        f"{_measured_on(trial)}; the teacher's latency was measured in the same processes. The teacher's emissions are "
        "its one-off fine-tuning, shared by the whole search. [low, high]: 95% paired-bootstrap interval over the "
        "split's examples (student and teacher on the same resampled examples)."
    )
    precision = str(trial.get("trial.inference_precision", fixed.get("inference_precision", "fp32")))
    runtime = _runtime(trial, fixed)
    from prunetune.analysis.fidelity import trial_notes

    figures = "".join(f" {line}" for line in trial_notes(trial))
    usage = runtime.usage(precision, _pipeline_task(run))
    return ("## Metrics\n\n" + "\n".join(rows) + "\n\n" + _runtime_line(runtime, precision) + note + figures
            + ("\n\n" + usage.replace("DIR", directory_name) if usage else ""))


def _held_out_rows(run: RunData, trial: pd.Series, kind: str) -> list[str]:
    """The headline metric and its drop on the held-out test split: the figures to trust, since the
    search selected this model on the evaluation split."""
    headline = M.headline_metric(kind)
    rows = []
    for key in (M.held_out_key(headline), M.held_out_key(M.drop_key(headline))):
        if _present(trial.get(key)):
            rows.append(f"| **{label(key)}** | **{with_interval(key, trial)}** | "
                        f"{format_value(key, run.teacher.metrics.get(key))} | {M.UNCERTAINTY_METRICS[key]} |")
    return rows


def _measured_on(trial: pd.Series) -> str:
    """The hardware, threads and software the figures were measured with (never a node's id)."""
    hardware = trial.get(M.LATENCY_HARDWARE)
    threads = trial.get(M.LATENCY_THREADS)
    where = f"on {hardware}" if isinstance(hardware, str) and hardware else "on the worker that ran the trial"
    if _present(threads):
        where += f" with {int(float(threads))} thread(s)"
    software = trial.get(M.SOFTWARE)
    return where + (f", with {software}" if isinstance(software, str) and software else "")


def _present(value) -> bool:
    try:
        return float(value) == float(value)
    except (TypeError, ValueError):
        return False


def _runtime(trial: pd.Series, fixed: dict):
    """The runtime the trial's figures were measured in (its registry entry)."""
    from prunetune.trainables.runtimes import REFERENCE_RUNTIME, RUNTIMES

    name = trial.get("trial.runtime", fixed.get("runtime", REFERENCE_RUNTIME))
    return RUNTIMES.get(str(name) if isinstance(name, str) else REFERENCE_RUNTIME, RUNTIMES[REFERENCE_RUNTIME])


def _runtime_line(runtime, precision: str) -> str:
    """Which runtime and precision the figures are for, and what the speed-ups compare with."""
    return (f"**The figures are for {runtime.label} at `{precision}`.** Speed-up is "
            "against the dense fp32 teacher in PyTorch eager; speed-up, same runtime, against the dense teacher in "
            f"{runtime.label} at `{precision}`.\n\n")


def _front_section(analysis: FrontAnalysis, trial_id: str, why: list[str] | None) -> str:
    trials = analysis.trials
    row = trials[trials[R.TRIAL_ID] == trial_id].iloc[0]
    front = trials[trials[ON_FRONT]]
    lines = [f"Objectives: {', '.join(f'{k} ({d})' for k, d in analysis.objectives.items())}; "
             f"{len(trials)} finished trials, {len(front)} on the Pareto front; hypervolume "
             f"{analysis.hypervolume:.4f} (objectives normalised to [0, 1] over the trials, reference point "
             f"{REFERENCE_POINT})."]
    if row[ON_FRONT]:
        lines.append(f"This trial is **on the front**{' and is its knee (balanced compromise)' if row[KNEE] else ''}.")
        for key, direction in analysis.objectives.items():
            rank = front[key].rank(ascending=direction == "min", method="min")[front[R.TRIAL_ID] == trial_id].iloc[0]
            lines.append(f"- {label(key)}: {int(rank)} of {len(front)} on the front")
    else:
        better = _dominating(trials, row, analysis.objectives)
        lines.append(f"This trial is **not on the front**; dominated by: {', '.join(better)}.")
    if why:
        lines += ["", "Why it was chosen:", ""] + [f"- {line.strip()}" for line in why]
    return "## Place on the Pareto front\n\n" + "\n".join(lines)


def _dominating(trials: pd.DataFrame, row: pd.Series, objectives: dict[str, str]) -> list[str]:
    ids = []
    for _, other in trials.iterrows():
        no_worse = all(other[k] >= row[k] if d == "max" else other[k] <= row[k] for k, d in objectives.items())
        better = any(other[k] > row[k] if d == "max" else other[k] < row[k] for k, d in objectives.items())
        if no_worse and better:
            ids.append(str(other[R.TRIAL_ID]))
    return ids


def _configuration_section(run: RunData, trial: pd.Series) -> str:
    searched = set(run.searched_columns)
    rows = ["| key | value | |", "| --- | --- | --- |"]
    rows += [f"| `{c}` | {format_value(c, trial[c])} | {'searched' if c in searched else ''} |"
             for c in run.config_columns]
    return "## Configuration\n\n" + "\n".join(rows)


def _labels_section(labels: dict[int, str]) -> str:
    lines = [f"- {index}: `{name}`" for index, name in sorted(labels.items())]
    return "## Labels\n\n" + "\n".join(lines)


def _usage_section(out_dir: Path, run: RunData) -> str:
    from prunetune.analysis.export import shipped_modeling_file

    modeling = shipped_modeling_file(out_dir)
    custom = modeling is not None
    remote = ", trust_remote_code=True" if custom else ""
    kind, pair = _task(run)
    example = _EXAMPLES["pairs" if kind == "classification" and pair else kind]
    options = ', aggregation_strategy="simple"' if kind == "token_classification" else ""
    text = (
        "## Usage\n\n"
        "```python\n"
        "from transformers import pipeline\n\n"
        f'model = pipeline("{_pipeline_task(run)}", model="{out_dir.name}"{remote}{options})\n'
        f"print(model({example}))\n"
        "```"
    )
    if custom:
        text += (
            "\n\nLayers keep different numbers of attention heads and FFN neurons, stored in `config.json` "
            "(`layer_heads`, `layer_intermediate_sizes`). A layer listed in `skipped_layers` was removed whole "
            "while the model trained and passes its input on; another layer with 0 of each keeps only its two "
            f"layer norms. The code that builds them is `{modeling}`, "
            "which needs only torch and transformers. Where prunetune is installed, "
            "`prunetune.trainables.register_auto_classes()` registers the same classes with "
            "transformers' Auto classes, and the model then loads without `trust_remote_code`."
        )
    return text


def _checks_section(check, out_dir: Path) -> str:
    lines = [f"- Loaded through `pipeline`, this directory gives what the trial's model gives on "
             f"{check.texts} sample inputs (max |output difference| {check.max_logit_difference:.1e})."]
    if check.measured_runtime is not None:
        from prunetune.trainables.runtimes import RUNTIMES

        runtime = RUNTIMES[check.measured_runtime]
        files = " and ".join(f"`{name}`" for name in runtime.shipped_files)
        lines.append(f"- {files}: the {check.measured_precision} {runtime.label} model the trial measured, shipped as "
                     f"it was; it predicts what the PyTorch weights predict on {check.runtime_agreement:.0%} of the "
                     "sample texts"
                     + (f" (max |logit difference| {check.runtime_max_difference:.1e})."
                        if check.runtime_max_difference is not None else " (int8 rounds its weights and activations)."))
    if check.onnx_max_difference is not None:
        lines.append(f"- `model.onnx` (the tokenizer's inputs; the head's outputs) matches PyTorch "
                     f"within {check.onnx_max_difference:.1e} (onnxruntime, CPU).")
    return "## Checks\n\n" + "\n".join(lines)
