"""Pareto set, hypervolume and knee against hand-computed cases."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from prunetune import metrics as M
from prunetune.analysis import front as F
from prunetune.analysis import load_run
from prunetune.analysis import runs as R
from prunetune.errors import DataError
from tests.analysis import synthetic as S

ACC_LAT = ["max", "min"]
# (accuracy, latency): C is dominated by B; the others trade off.
HAND_2D = np.array([[0.9, 10.0], [0.8, 5.0], [0.7, 8.0], [0.6, 2.0]])


def test_nondominated_set_of_a_hand_case():
    mask = F.nondominated_mask(HAND_2D, ACC_LAT)
    assert mask.tolist() == [True, True, False, True]


def test_hypervolume_2d_matches_the_hand_computed_staircase():
    # Normalised costs: A (0, 1), B (1/3, 3/8), D (1, 0); reference 1.1.
    # Staircase: 1/3 * 0.1 + 2/3 * 0.725 + 0.1 * 1.1 = 0.626666...
    bounds = F.Bounds.of(F.as_minimisation(HAND_2D, ACC_LAT))
    assert F.hypervolume(HAND_2D, ACC_LAT, bounds) == pytest.approx(1 / 30 + 2 / 3 * 0.725 + 0.11)


def test_hypervolume_3d_matches_inclusion_exclusion():
    # Normalised: P1 (0,1,1), P2 (1,0,1), P3 (1,1,0), P4 (.5,.5,.5); reference 1.1.
    # Singles 3 * 0.011 + 0.216; pairs 3 * 0.001 + 3 * 0.006; triples 4 * 0.001; all four 0.001.
    values = np.array([[0, 10, 10], [10, 0, 10], [10, 10, 0], [5, 5, 5]], dtype=float)
    directions = ["min"] * 3
    bounds = F.Bounds.of(values)
    expected = (3 * 0.011 + 0.216) - (3 * 0.001 + 3 * 0.006) + 4 * 0.001 - 0.001
    assert F.hypervolume(values, directions, bounds) == pytest.approx(expected)
    assert F.hypervolume(values[:3], directions, bounds) == pytest.approx(0.031)


def test_a_single_best_point_fills_the_reference_box():
    values = np.array([[1.0, 1.0, 1.0], [2.0, 3.0, 4.0]])
    bounds = F.Bounds.of(values)
    assert F.hypervolume(values, ["min"] * 3, bounds) == pytest.approx(1.1**3)


def test_an_objective_without_spread_adds_no_tradeoff():
    values = np.array([[0.9, 10.0, 1.0], [0.8, 5.0, 1.0]])  # the third objective is the same everywhere
    bounds = F.Bounds.of(F.as_minimisation(values, ["max", "min", "min"]))
    # Normalised: (0, 1, 0) and (1, 0, 0). The first two axes give the staircase 1 * 0.1 + 0.1 * 1.1;
    # the flat axis (0 for both) spans the whole 1.1.
    area = 1.0 * 0.1 + 0.1 * 1.1
    assert F.hypervolume(values, ["max", "min", "min"], bounds) == pytest.approx(area * 1.1)


def test_knee_is_the_front_point_closest_to_the_ideal():
    front = HAND_2D[F.nondominated_mask(HAND_2D, ACC_LAT)]
    # Front-normalised costs: (0, 1), (1/3, 3/8), (1, 0): distances 1, 0.50, 1.
    assert F.knee_index(front, ACC_LAT) == 1
    assert F.knee_index(front[:1], ACC_LAT) == 0


def test_hypervolume_history_grows_and_ends_at_the_total():
    values = HAND_2D[[2, 0, 1, 3]]  # finishing order: C, A, B, D
    bounds = F.Bounds.of(F.as_minimisation(values, ACC_LAT))
    history = F.hypervolume_history(values, ACC_LAT, bounds)
    assert history["trials"].tolist() == [1, 2, 3, 4]
    assert np.all(np.diff(history["hypervolume"]) >= 0)
    assert history["hypervolume"].iloc[-1] == pytest.approx(F.hypervolume(values, ACC_LAT, bounds))


def _brute_force_front(values: np.ndarray, directions: list[str]) -> set[int]:
    costs = F.as_minimisation(values, directions)
    return {
        i for i in range(len(costs))
        if not any(np.all(costs[j] <= costs[i]) and np.any(costs[j] < costs[i]) for j in range(len(costs)) if j != i)
    }


def test_analyse_a_run(run_dir):
    run = load_run(run_dir)
    analysis = F.analyse(run)
    finished = run.finished
    assert len(run.trials) == 25 and len(finished) == 24 and "t_err" not in set(analysis.trials[R.TRIAL_ID])
    values = finished[list(S.OBJECTIVES)].to_numpy(float)
    expected = set(finished.iloc[sorted(_brute_force_front(values, list(S.OBJECTIVES.values())))][R.TRIAL_ID])
    assert set(analysis.front[R.TRIAL_ID]) == expected
    assert analysis.front[M.ACCURACY].is_monotonic_decreasing  # best first
    assert analysis.knee_id in expected and analysis.trials[F.KNEE].sum() == 1
    assert 0 < analysis.hypervolume <= analysis.max_hypervolume == pytest.approx(1.1**3)
    assert len(analysis.history) == 24


def test_teacher_reference_uses_the_trials_median_latency(run_dir):
    run = load_run(run_dir)
    expected = run.finished[R.TEACHER_LATENCY_MS].median()
    assert run.teacher.get(M.LATENCY_MS) == pytest.approx(expected)
    assert run.teacher.get(M.ACCURACY) == S.TEACHER[M.ACCURACY]
    assert run.teacher.get(M.EMISSIONS_KG) == S.TEACHER[M.EMISSIONS_KG]


def test_two_objective_runs(tmp_path):
    objectives = {M.ACCURACY: "max", M.PARAMS: "min"}
    rows = [S.trial_row(f"t{i}", accuracy=a, latency_ms=5.0, emissions_kg=1e-5, sparsity=s, finished_at=i)
            for i, (a, s) in enumerate([(0.9, 0.1), (0.85, 0.5), (0.8, 0.4), (0.7, 0.9)])]
    run = load_run(S.write_run(tmp_path / "two", rows, S.run_config(objectives=objectives)))
    analysis = F.analyse(run)
    # params falls with sparsity: t2 (0.8, sparsity 0.4) is dominated by t1 (0.85, sparsity 0.5).
    assert set(analysis.front[R.TRIAL_ID]) == {"t0", "t1", "t3"}
    assert analysis.max_hypervolume == pytest.approx(1.21)


def test_a_run_without_finished_trials_says_so(tmp_path):
    run = load_run(S.write_run(tmp_path / "failed", [S.error_row("e1"), S.error_row("e2")]))
    with pytest.raises(DataError, match="no finished trial"):
        F.analyse(run)


def test_importing_analysis_stays_light():
    import subprocess

    code = ("import sys, prunetune.analysis; heavy = [m for m in ('torch', 'transformers', 'wandb', 'matplotlib', "
            "'ray') if m in sys.modules]; print(heavy); sys.exit(1 if heavy else 0)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
