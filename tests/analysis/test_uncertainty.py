"""The report's word on how far the front's quality can be trusted: intervals, held-out
figures, drops indistinguishable from zero, and trials the examples cannot tell apart."""

from __future__ import annotations

import io
import shutil

import numpy as np
import pandas as pd
import pytest
from rich.console import Console

from prunetune import metrics as M
from prunetune.analysis import analyse, load_run, pick_trial
from prunetune.analysis.report import print_summary, summarize_run
from prunetune.analysis.uncertainty import indistinguishable_pairs, uncertainty_notes, with_interval
from prunetune.errors import ConfigError
from prunetune.intervals import ExampleScores, save_example_scores
from prunetune.names import TRIAL_ID


@pytest.fixture
def scored_run(model_run, tmp_path):
    """The model run, whose trials saved per-example scores: m0 and m1 differ by two examples of 300,
    m2 by sixty."""
    run_dir = tmp_path / "search-m"
    shutil.copytree(model_run, run_dir)
    base = np.zeros(300)
    base[:270] = 1
    close = base.copy()
    close[[0, 1]] = 0
    far = base.copy()
    far[:60] = 0
    for trial_id, correct in (("m0", base), ("m1", close), ("m2", far)):
        save_example_scores(run_dir / "trials" / trial_id / M.EXAMPLE_SCORES_FILE, "validation",
                            ExampleScores.of_mean(correct))
    return run_dir


def test_a_figure_prints_with_its_interval_and_without_one_when_unmeasured():
    row = {M.ACCURACY_DROP: 0.01, "accuracy_drop_ci_low": -0.004, "accuracy_drop_ci_high": 0.024}
    assert with_interval(M.ACCURACY_DROP, row) == "0.0100 [-0.0040, 0.0240]"
    assert with_interval(M.ACCURACY_DROP, {M.ACCURACY_DROP: 0.01}) == "0.0100"


def test_trials_two_examples_apart_are_not_told_apart(scored_run):
    alike = indistinguishable_pairs(load_run(scored_run), ["m0", "m1", "m2", "m3"], split="validation")
    assert alike == {"m0": ["m1"], "m1": ["m0"], "m2": []}  # m3 saved no scores: left out


def test_the_report_says_which_figures_are_unbiased_and_what_cannot_be_told_apart(scored_run):
    run = load_run(scored_run)
    analysis = analyse(run)
    lines = uncertainty_notes(run, analysis.front)
    assert "accuracy_drop_test: on the held-out test split, never ranked on (unbiased)" in lines[0]
    assert any("m0: accuracy not distinguishable from m1" in line for line in lines)
    out = io.StringIO()
    print_summary(summarize_run(scored_run, wandb=False, console=Console(file=io.StringIO())),
                  console=Console(file=out, width=250))
    printed = out.getvalue()
    assert "accuracy_drop_test ↓ (held out)" in printed and "0.0700 [0.0400, 0.1000]" in printed


def test_a_drop_whose_interval_spans_zero_is_called_so(scored_run):
    run = load_run(scored_run)
    front = analyse(run).front.copy()
    front.loc[front.index[0], list(M.interval_keys(M.ACCURACY_DROP))] = (-0.01, 0.02)
    trial_id = front.iloc[0][TRIAL_ID]
    assert f"  {trial_id}: accuracy_drop not distinguishable from zero" in uncertainty_notes(run, front)


def test_an_unevaluated_front_says_how_to_evaluate_it(scored_run):
    table = pd.read_parquet(scored_run / "results.parquet")
    table = table.drop(columns=[c for c in table.columns if c.endswith("_test") or "_test_ci" in c])
    table.to_parquet(scored_run / "results.parquet")
    run = load_run(scored_run)
    assert any("--evaluate-test" in line for line in uncertainty_notes(run, analyse(run).front))


def test_pick_filters_on_held_out_figures_only_when_asked(model_run):
    run = load_run(model_run)
    analysis = analyse(run)
    # Validation drops: m0 0.02, m1 0.05, m2 0.10; on test each is 0.02 worse.
    assert pick_trial(run, analysis, constraints={"max_accuracy_drop": 0.05}, prefer="latency").trial_id == "m1"
    on_test = pick_trial(run, analysis, constraints={"max_accuracy_drop_test": 0.05}, prefer="latency")
    assert on_test.trial_id == "m0"


def test_pick_can_bound_the_upper_end_of_the_drops_interval(model_run):
    run = load_run(model_run)
    analysis = analyse(run)
    # m1's drop is 0.05 but its interval reaches 0.07: it meets a 0.06 limit only on the estimate.
    limit = {"max_accuracy_drop": 0.06}
    assert pick_trial(run, analysis, constraints=limit, prefer="latency").trial_id == "m1"
    upper = pick_trial(run, analysis, constraints={**limit, "drop_bound": "upper"}, prefer="latency")
    assert upper.trial_id == "m0"
    assert "accuracy_drop_ci_high <= 0.0600" in upper.constraints[0].describe()


def test_a_held_out_limit_on_a_run_without_test_figures_says_how_to_get_them(scored_run):
    table = pd.read_parquet(scored_run / "results.parquet")
    table.drop(columns=[c for c in table.columns if "_test" in c]).to_parquet(scored_run / "results.parquet")
    run = load_run(scored_run)
    with pytest.raises(ConfigError, match="--evaluate-test"):
        pick_trial(run, analyse(run), constraints={"max_accuracy_drop_test": 0.05})
