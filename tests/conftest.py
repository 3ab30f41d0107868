"""Shared fixtures: tiny BERT models and tiny datasets built in code (never downloaded)."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

TOPICS = {
    "sport": ["goal", "match", "team", "coach", "league", "score"],
    "tech": ["chip", "software", "phone", "network", "robot", "code"],
    "money": ["bank", "market", "profit", "shares", "tax", "price"],
}
FILLER = ["the", "a", "today", "new", "said", "after", "report", "week"]


def make_texts(rows_per_label: int = 24, seed: int = 0) -> list[tuple[str, str]]:
    """(text, label) pairs whose topic words make the label learnable."""
    rng = random.Random(seed)
    rows = []
    for label, words in TOPICS.items():
        for _ in range(rows_per_label):
            tokens = rng.choices(words, k=5) + rng.choices(FILLER, k=4)
            rng.shuffle(tokens)
            rows.append((" ".join(tokens), label))
    return rows


VOCABULARY = sorted({w for words in TOPICS.values() for w in words} | set(FILLER))


def build_tiny_bert(directory: Path, *, family: str = "bert", **sizes) -> Path:
    """A randomly initialised encoder of ``family`` with a word-level vocabulary, saved as a HF model dir."""
    from tests.models import build_tiny_model_dir

    return build_tiny_model_dir(directory, VOCABULARY, family=family, **sizes)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    return build_tiny_bert(tmp_path_factory.mktemp("tiny-bert"))


@pytest.fixture(scope="session")
def tiny_family_dir(tmp_path_factory):
    """``family -> model directory``: one tiny model per family, built once per session."""
    built: dict[str, Path] = {}

    def make(family: str) -> Path:
        if family not in built:
            built[family] = build_tiny_bert(tmp_path_factory.mktemp(f"tiny-{family}"), family=family)
        return built[family]

    return make


@pytest.fixture(scope="session")
def tiny_dataset_csv(tmp_path_factory) -> Path:
    import pandas as pd

    path = tmp_path_factory.mktemp("data") / "topics.csv"
    pd.DataFrame(make_texts(), columns=["text", "label"]).to_csv(path, index=False)
    return path


def tiny_config_dict(model_dir: Path, dataset: Path, cache_dir: Path, **trial) -> dict:
    """A whole config for a trial of a few seconds on the tiny model."""
    return {
        "task": {"dataset": str(dataset), "max_length": 16, "seed": 0},
        "teacher": {"model": str(model_dir), "epochs": 4, "batch_size": 8, "learning_rate": 1e-3,
                    "cache_dir": str(cache_dir)},
        "trial": {"method": "movement", "block_size": 4, "max_steps": 12, "batch_size": 8,
                  # One pruning target: a target speed-up given replaces the sparsity.
                  **({} if trial.get("target_speedup") is not None else {"sparsity": 0.5}),
                  "learning_rate": 1e-3, "eval_every": 6,
                  # Two timing rounds: tests check that latency is measured, not how well (bench/ does).
                  "latency": {"batch_size": 1, "seq_len": 16, "min_run_time": 0.05, "rounds": 2},
                  "emissions": {"country_iso_code": "USA", "measure_power_secs": 1}, **trial},
    }


@pytest.fixture
def tiny_config(tiny_model_dir, tiny_dataset_csv, tmp_path_factory):
    from prunetune.config import validate

    cache = tmp_path_factory.getbasetemp() / "teacher-cache"

    def make(**trial):
        return validate(tiny_config_dict(tiny_model_dir, tiny_dataset_csv, cache, **trial), check_model=True)

    return make
