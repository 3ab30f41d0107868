"""Tiny randomly initialised classifiers of every supported family, built in code (never downloaded)."""

from __future__ import annotations

from pathlib import Path

SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def family_config(family: str, *, vocab_size: int = 50, hidden: int = 32, layers: int = 2, heads: int = 4,
                  ffn: int = 64, num_labels: int = 3, positions: int = 64, **extra):
    """A small config of ``family``; padding id 0, as in the word-level test tokenizer."""
    import transformers

    common = dict(vocab_size=vocab_size, num_labels=num_labels, pad_token_id=0, **extra)
    if family == "distilbert":
        return transformers.DistilBertConfig(dim=hidden, n_layers=layers, n_heads=heads, hidden_dim=ffn,
                                             max_position_embeddings=positions, **common)
    sizes = dict(hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads, intermediate_size=ffn,
                 max_position_embeddings=positions, **common)
    if family == "deberta_v2":
        sizes.setdefault("relative_attention", True)
        sizes.setdefault("pos_att_type", ["p2c", "c2p"])
        sizes.setdefault("position_buckets", 8)
        sizes.setdefault("max_relative_positions", 16)
        sizes.setdefault("share_att_key", True)
        sizes.setdefault("position_biased_input", False)
        return transformers.DebertaV2Config(**sizes)
    # The special tokens of the word-level test tokenizer; ModernBERT's every other layer slides a
    # window of 8 tokens (half of it each side), the rest attend in full; EuroBERT's attention is
    # grouped-query.
    special = {"modernbert": dict(global_attn_every_n_layers=2, local_attention=8, cls_token_id=2, sep_token_id=3,
                                  bos_token_id=2, eos_token_id=3, mask_token_id=4),
               # grouped-query attention: 2 key/value heads, each shared by 2 of the 4 query heads
               "eurobert": dict(bos_token_id=2, eos_token_id=3, mask_token_id=4, num_key_value_heads=2),
               "mpnet": dict(bos_token_id=2, eos_token_id=3)}.get(family, {})
    for key, value in special.items():
        sizes.setdefault(key, value)
    config_class = {"bert": transformers.BertConfig, "roberta": transformers.RobertaConfig,
                    "xlm_roberta": transformers.XLMRobertaConfig, "electra": transformers.ElectraConfig,
                    "modernbert": transformers.ModernBertConfig, "eurobert": transformers.EuroBertConfig,
                    "gte": transformers.GteConfig, "nomic_bert": transformers.NomicBertConfig,
                    "mpnet": transformers.MPNetConfig}[family]
    if family == "electra":
        sizes["embedding_size"] = hidden
    return config_class(**sizes)


def tiny_classifier(family: str = "bert", *, seed: int = 0, **sizes):
    """A randomly initialised sequence classifier of ``family``."""
    import torch
    from transformers import AutoModelForSequenceClassification

    torch.manual_seed(seed)
    return AutoModelForSequenceClassification.from_config(family_config(family, **sizes)).eval()


def build_tiny_model_dir(directory: Path, vocabulary: list[str], *, family: str = "bert", **sizes) -> Path:
    """A tiny pretrained-style encoder of ``family`` (no classification head, as on a hub) with a
    word-level tokenizer over ``vocabulary``, saved as a HF model dir."""
    import torch
    from transformers import AutoModel, BertTokenizer

    vocab = SPECIAL + sorted(set(vocabulary))
    tokenizer = BertTokenizer(vocab={word: index for index, word in enumerate(vocab)})
    torch.manual_seed(0)
    model = AutoModel.from_config(family_config(family, vocab_size=len(vocab), **sizes))
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


def block_pruner(model, method: str = "movement", *, block_size: int, min_head_density: float = 0.0,
                 final: float = 0.5):
    """The block pruner a movement or magnitude trial builds, on its own (the schedule held at ``final``)."""
    from prunetune.trainables.families import family_of
    from prunetune.trainables.methods._block import (
        BlockPruner,
        MagnitudeScorer,
        MovementScorer,
    )

    scorers = {"movement": lambda views: MovementScorer(views, block_size),
               "magnitude": lambda views: MagnitudeScorer(block_size)}
    return BlockPruner(model, family_of(model), scorer=scorers[method], block_size=block_size,
                       sparsity_at=lambda step: final, final_sparsity=final, min_head_density=min_head_density)


def bake(model) -> None:
    """Write the installed masks into the weights (as a pruner's finish does)."""
    from prunetune.trainables.families import family_of
    from prunetune.trainables.methods._masks import bake_masks

    bake_masks(model, family_of(model))


#: Python source that makes ``import prunetune`` fail in the process that runs it (for
#: subprocess checks that a model directory serves where prunetune is not installed).
WITHOUT_PRUNETUNE = """
import importlib.abc, sys
class NoPrunetune(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "prunetune" or name.startswith("prunetune."):
            raise ImportError("prunetune is not installed here")
sys.meta_path.insert(0, NoPrunetune())
"""
