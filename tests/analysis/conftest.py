from __future__ import annotations

import json
from pathlib import Path

import pytest

from prunetune import metrics as M
from tests.analysis import synthetic as S


@pytest.fixture(autouse=True)
def _quiet_offline_environment(monkeypatch, tmp_path_factory):
    """No network, no W&B login, and wandb / Hugging Face caches kept out of the home directory."""
    home = tmp_path_factory.getbasetemp() / "home"
    for name in ("WANDB_API_KEY", "WANDB_MODE", "WANDB_DISABLED", "WANDB_PROJECT", "WANDB_ENTITY"):
        monkeypatch.delenv(name, raising=False)
    for name, sub in (("WANDB_CONFIG_DIR", "wandb-config"), ("WANDB_CACHE_DIR", "wandb-cache"),
                      ("WANDB_DATA_DIR", "wandb-data"), ("HF_MODULES_CACHE", "hf-modules")):
        monkeypatch.setenv(name, str(home / sub))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    """A 24-trial search (one errored) with three objectives, W&B offline."""
    directory = tmp_path / "search-a"
    return S.write_run(directory, S.realistic_rows(directory))


@pytest.fixture(scope="session")
def model_run(tmp_path_factory) -> Path:
    """A run whose three finished trials saved real (tiny, compacted) models."""
    from tests.analysis import tiny_models

    directory = tmp_path_factory.mktemp("models") / "search-m"
    rows = []
    for i, (accuracy, latency, emissions, sparsity) in enumerate(
        [(0.93, 9.0, 5e-5, 0.3), (0.90, 6.0, 4e-5, 0.6), (0.85, 4.0, 6e-5, 0.8)]
    ):
        trial_id = f"m{i}"
        model_dir = directory / "trials" / trial_id / "model"
        tiny_models.save_compacted_model(model_dir, seed=i, sparsity=sparsity)
        rows.append(S.trial_row(trial_id, accuracy=accuracy, latency_ms=latency, emissions_kg=emissions,
                                sparsity=sparsity, finished_at=1000.0 + i, run_dir=directory))
        rows[-1].update(_measured_like_a_search(accuracy))
        (directory / "trials" / trial_id / "result.json").write_text(json.dumps({"metrics": {}, "config": {}}))
    # m3: a dense model that compaction left a plain BERT (dominated, never picked).
    tiny_models.save_plain_model(directory / "trials" / "m3" / "model", seed=3)
    rows.append(S.trial_row("m3", accuracy=0.80, latency_ms=8.0, emissions_kg=7e-5, sparsity=0.0,
                            finished_at=1005.0, run_dir=directory))
    rows.append(S.error_row("m_err", finished_at=1010.0, run_dir=directory))
    return S.write_run(directory, rows)


def _measured_like_a_search(accuracy: float) -> dict:
    """What a search records beside the figures: intervals, the held-out test split, hardware, software."""
    drop = S.TEACHER[M.ACCURACY] - accuracy
    return {
        **dict(zip(M.interval_keys(M.ACCURACY), (accuracy - 0.03, accuracy + 0.03))),
        **dict(zip(M.interval_keys(M.ACCURACY_DROP), (drop - 0.02, drop + 0.02))),
        M.held_out_key(M.ACCURACY): accuracy - 0.02, M.held_out_key(M.ACCURACY_DROP): drop + 0.02,
        **dict(zip(M.interval_keys(M.held_out_key(M.ACCURACY)), (accuracy - 0.05, accuracy + 0.01))),
        **dict(zip(M.interval_keys(M.held_out_key(M.ACCURACY_DROP)), (drop - 0.01, drop + 0.05))),
        M.held_out_key(M.TEACHER_ACCURACY): S.TEACHER[M.ACCURACY],
        M.LATENCY_HARDWARE: "AMD EPYC (2 CPUs)", M.SOFTWARE: "torch 2.13.0, transformers 5.25.0",
    }
