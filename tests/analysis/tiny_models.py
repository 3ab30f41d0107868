"""Tiny compacted classifiers, built in code the way a trial saves its model."""

from __future__ import annotations

from pathlib import Path

LABELS = ("business", "entertainment", "politics", "sport", "tech")
WORDS = sorted(set(
    "shares in the bank rose after it reported record profits for year striker scored twice second half "
    "to win cup final government will publish its plans health service next week new smartphone with "
    "folding screen goes on sale spring film won three awards best director oil prices fell voters polls "
    "tennis election".split()
))
SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def tokenizer():
    from transformers import BertTokenizer

    vocab = SPECIAL + WORDS
    return BertTokenizer(vocab={word: index for index, word in enumerate(vocab)})


def pruned_classifier(*, seed: int, sparsity: float):
    """A random BERT classifier with real label names whose heads / FFN neurons are zeroed by ``sparsity``."""
    import torch
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=len(SPECIAL) + len(WORDS), hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
        intermediate_size=64, max_position_embeddings=64, num_labels=len(LABELS),
        id2label=dict(enumerate(LABELS)), label2id={name: i for i, name in enumerate(LABELS)},
    )
    model = BertForSequenceClassification(config).eval()
    with torch.no_grad():
        for layer in model.bert.encoder.layer:
            dead_heads = int(round(sparsity * 3))  # keep at least one head
            rows = slice(0, dead_heads * 8)
            for linear in (layer.attention.self.query, layer.attention.self.key, layer.attention.self.value):
                linear.weight[rows] = 0
                linear.bias[rows] = 0
            width = int(64 * sparsity)
            layer.intermediate.dense.weight[:width] = 0
            layer.intermediate.dense.bias[:width] = 0
    return model


def save_compacted_model(directory: Path, *, seed: int, sparsity: float) -> Path:
    from prunetune.trainables.families.compaction import (
        compact_and_verify,
        save_compacted,
    )

    compacted, _ = compact_and_verify(pruned_classifier(seed=seed, sparsity=sparsity))
    return save_compacted(compacted, directory, tokenizer=tokenizer())


def save_plain_model(directory: Path, *, seed: int) -> Path:
    """An uncompacted BertForSequenceClassification directory (a trial that pruned nothing)."""
    model = pruned_classifier(seed=seed, sparsity=0.0)
    model.save_pretrained(directory)
    tokenizer().save_pretrained(directory)
    return directory
