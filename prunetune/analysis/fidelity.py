"""What the figures of a run can be trusted for: re-timing, flagged gaps, noisy latencies, estimated energy.

Every view of a run (the report, the plots, the model card, the W&B summary) says where its
latency figures come from and what to be careful with, from the same lines.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from prunetune import metrics as M
from prunetune.analysis import runs as R
from prunetune.analysis.runs import RunData
from prunetune.names import CONFIG_PREFIX

RUNTIME_KEY = f"{CONFIG_PREFIX}runtime"
PRECISION_KEY = f"{CONFIG_PREFIX}inference_precision"


@dataclass(frozen=True)
class Fidelity:
    retimed: list[str]  # trials whose latency figures were re-timed quietly
    flagged: list[str]  # ... whose in-search latency was more than 10% off
    noisy: list[str]  # trials whose latency stayed noisy
    energy_estimated: bool  # some energy is CPU power estimated from TDP and load

    @property
    def latency_source(self) -> str:
        if self.retimed:
            return "latency re-timed quietly"
        return "latency from inside the search"


def fidelity(run: RunData) -> Fidelity:
    trials = run.trials[run.trials[R.STATUS] == R.TERMINATED]
    return Fidelity(
        retimed=_ids(trials, _true(trials, M.RETIMED)),
        flagged=_ids(trials, _column(trials, M.RETIME_RATIO).map(M.retime_flagged)),
        noisy=_ids(trials, _true(trials, M.LATENCY_NOISY)),
        energy_estimated=bool(_true(trials, M.ENERGY_ESTIMATED).any()),
    )


def notes(run: RunData) -> list[str]:
    """Sentences on the run's figures, for every view of it."""
    found = fidelity(run)
    lines = []
    if found.retimed:
        lines.append(f"{M.LATENCY_MS}, {M.LATENCY_P95_MS} and {M.SPEEDUP} of {len(found.retimed)} trial(s) were re-timed "
                     "quietly after the search (a whole node each, in alternating rounds with the dense teacher); "
                     f"the figures from inside the search are in the *{M.IN_SEARCH_SUFFIX} columns.")
    else:
        lines.append("Latencies are the figures measured inside the search, while other trials trained on the same "
                     "node; `prunetune report RUN_DIR --retime` times them again quietly.")
    if found.flagged:
        lines.append(f"Re-timing moved the latency of {', '.join(found.flagged)} by more than 10%: their in-search "
                     "figures were not to be trusted.")
    if found.noisy:
        lines.append(f"The latency of {', '.join(found.noisy)} stayed noisy (round medians spread wider than "
                     "trial.latency.max_spread after every attempt).")
    lines.extend(table_agreement_lines(run))
    if found.energy_estimated:
        lines.append("Energy and emissions are estimates: CodeCarbon had no energy counters (RAPL) to read and "
                     "estimated CPU power from the CPU's TDP and its load.")
    return lines


@dataclass(frozen=True)
class TableAgreement:
    """How close the latency table's predicted speed-ups came to the measured ones, for one serving."""

    serving: str  # "<runtime> <precision>"
    ratios: pd.Series  # measured / predicted speedup_same_runtime, one per finished trial
    quiet_ratios: pd.Series  # the same, of the trials re-timed quietly

    @property
    def median(self) -> float:
        return float(self.ratios.median())


def table_agreement(run: RunData) -> list[TableAgreement]:
    """Per runtime and precision, measured ``speedup_same_runtime`` over the table's ``predicted_speedup``.

    Only trials pruned to a target speed-up have a prediction. A re-timed trial's measured
    figure is its quiet one, which is why the quiet trials are also given apart.
    """
    trials = run.trials[run.trials[R.STATUS] == R.TERMINATED]
    if M.PREDICTED_SPEEDUP not in trials or M.SPEEDUP_SAME_RUNTIME not in trials:
        return []
    ratios = pd.to_numeric(trials[M.SPEEDUP_SAME_RUNTIME], errors="coerce") / pd.to_numeric(
        trials[M.PREDICTED_SPEEDUP], errors="coerce")
    ratios = ratios[ratios.notna() & (ratios > 0)]
    if ratios.empty:
        return []
    serving = _setting(run, trials, RUNTIME_KEY) + " " + _setting(run, trials, PRECISION_KEY)
    quiet = _true(trials, M.RETIMED)
    return [TableAgreement(name, ratios[serving[ratios.index] == name],
                           ratios[(serving[ratios.index] == name) & quiet[ratios.index]])
            for name in sorted(serving[ratios.index].unique())]


def table_agreement_lines(run: RunData) -> list[str]:
    lines = []
    for found in table_agreement(run):
        quiet = (f"; the {len(found.quiet_ratios)} re-timed quietly {_ratio_spread(found.quiet_ratios)}"
                 if len(found.quiet_ratios) else "")
        lines.append(f"Latency table in {found.serving}: measured {M.SPEEDUP_SAME_RUNTIME} over "
                     f"{M.PREDICTED_SPEEDUP} {_ratio_spread(found.ratios)} over {len(found.ratios)} trial(s){quiet}.")
    return lines


def _setting(run: RunData, trials: pd.DataFrame, key: str) -> pd.Series:
    """A trial's value of ``key``, else the run's fixed one."""
    fixed = (run.config.get("trial") or {}).get(key.removeprefix(CONFIG_PREFIX))
    return _column(trials, key).where(lambda values: values.notna(), fixed).astype(str)


def _ratio_spread(ratios: pd.Series) -> str:
    if len(ratios) == 1:
        return f"{ratios.iloc[0]:.3f}"
    return f"median {ratios.median():.3f} ({ratios.min():.3f} to {ratios.max():.3f})"


def trial_notes(row: pd.Series) -> list[str]:
    """Sentences on one trial's figures (the model card)."""
    lines = []
    if _truthy(row.get(M.RETIMED)):
        lines.append(f"Latency re-timed quietly after the search (a whole node, alternating rounds with the dense "
                     f"teacher): {_ms(row.get(M.LATENCY_MS))}, against {_ms(row.get(M.in_search(M.LATENCY_MS)))} "
                     "measured inside the search while other trials trained.")
    if _truthy(row.get(M.LATENCY_NOISY)):
        lines.append("Its latency stayed noisy: the round medians spread wider than trial.latency.max_spread.")
    if _truthy(row.get(M.ENERGY_ESTIMATED)):
        lines.append("Energy and emissions are estimates: CPU power from the CPU's TDP and load (no RAPL counters).")
    return lines


def _column(table: pd.DataFrame, key: str) -> pd.Series:
    return table[key] if key in table else pd.Series([None] * len(table), index=table.index, dtype=object)


def _true(table: pd.DataFrame, key: str) -> pd.Series:
    return _column(table, key).map(_truthy)


def _truthy(value) -> bool:
    return bool(value) and not pd.isna(value)


def _ids(table: pd.DataFrame, mask: pd.Series) -> list[str]:
    return [str(trial_id) for trial_id in table.loc[mask.astype(bool), R.TRIAL_ID]]


def _ms(value) -> str:
    return f"{float(value):.3g} ms" if _truthy(value) or value == 0 else "?"
