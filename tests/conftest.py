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
SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


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


def build_tiny_bert(directory: Path, *, hidden: int = 32, layers: int = 2, heads: int = 4, ffn: int = 64) -> Path:
    """A randomly initialised BERT with a word-level vocabulary, saved as a HF model dir."""
    import torch
    from transformers import BertConfig, BertModel, BertTokenizer

    vocab = SPECIAL + sorted({w for words in TOPICS.values() for w in words} | set(FILLER))
    tokenizer = BertTokenizer(vocab={word: index for index, word in enumerate(vocab)})
    torch.manual_seed(0)
    config = BertConfig(vocab_size=len(vocab), hidden_size=hidden, num_hidden_layers=layers,
                        num_attention_heads=heads, intermediate_size=ffn, max_position_embeddings=64)
    BertModel(config).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    return build_tiny_bert(tmp_path_factory.mktemp("tiny-bert"))


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
        "trial": {"method": "movement", "sparsity": 0.5, "block_size": 4, "max_steps": 12, "batch_size": 8,
                  "learning_rate": 1e-3, "eval_every": 6,
                  "latency": {"batch_size": 1, "seq_len": 16, "min_run_time": 0.05},
                  "emissions": {"country_iso_code": "USA", "measure_power_secs": 1}, **trial},
    }


@pytest.fixture
def tiny_config(tiny_model_dir, tiny_dataset_csv, tmp_path_factory):
    from prunetune.config import validate

    cache = tmp_path_factory.getbasetemp() / "teacher-cache"

    def make(**trial):
        return validate(tiny_config_dict(tiny_model_dir, tiny_dataset_csv, cache, **trial), check_model=True)

    return make
