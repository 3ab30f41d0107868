"""Encoder families: one description of a layer per family, and a registry by ``model_type``.

A family is a :class:`FamilySpec` in its own module (``bert.py``, ``roberta.py``, ...):
attribute paths of the prunable maps and the names of its config keys. Pruning,
compaction, the compacted model's classes and its remote code are written once against
that description. To add a family, write its module and add it to :data:`FAMILIES`; the
contract test (``tests/trainables/test_contract.py``) then runs every method on it.

Importing this package imports neither torch nor transformers (config validation reads
model dimensions from ``config.json`` through it); :mod:`.compaction` and :mod:`._modeling`
hold the torch side.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from prunetune.builtins import BUILTIN_MODELS, resolve_model
from prunetune.errors import ModelError
from prunetune.trainables.families import (
    bert,
    deberta_v2,
    distilbert,
    electra,
    eurobert,
    gte,
    modernbert,
    mpnet,
    nomic_bert,
    roberta,
    xlm_roberta,
)
from prunetune.trainables.families._spec import ROLES, ConfigKeys, FamilySpec

#: Registry: family name -> its spec. One line per family.
FAMILIES: dict[str, FamilySpec] = {
    spec.name: spec
    for spec in (bert.SPEC, roberta.SPEC, xlm_roberta.SPEC, electra.SPEC, distilbert.SPEC, deberta_v2.SPEC,
                 modernbert.SPEC, eurobert.SPEC, gte.SPEC, nomic_bert.SPEC, mpnet.SPEC)
}

_BY_MODEL_TYPE: dict[str, FamilySpec] = {
    **{spec.model_type: spec for spec in FAMILIES.values()},
    **{spec.pruned_model_type: spec for spec in FAMILIES.values()},
}


def supported_model_types() -> list[str]:
    return [spec.model_type for spec in FAMILIES.values()]


def family_for(model_type: str | None, *, model: str = "teacher.model") -> FamilySpec:
    """The family of a ``model_type`` (a compacted ``prunetune_<family>`` one included)."""
    spec = _BY_MODEL_TYPE.get(str(model_type))
    if spec is None:
        raise ModelError(
            f"{model}: architecture {model_type!r} is not supported; supported model types: "
            f"{', '.join(supported_model_types())}"
        )
    return spec


def family_of(model) -> FamilySpec:
    """The family of a loaded transformers model."""
    return family_for(getattr(model.config, "model_type", None), model=type(model).__name__)


def is_compacted(config) -> bool:
    """Whether a transformers config is a compacted model's (it carries per-layer widths)."""
    return getattr(config, "layer_heads", None) is not None


@dataclass(frozen=True)
class ModelDims:
    """The dimensions that decide which block sizes, group sizes and lengths a model accepts."""

    name: str
    family: str
    hidden_size: int
    num_heads: int
    intermediate_size: int
    num_layers: int
    max_positions: int | None = None  # tokens the position embeddings can hold (None: no limit)
    num_kv_heads: int | None = None  # grouped-query attention's key/value heads (None: one per head)

    @property
    def head_size(self) -> int:
        return self.hidden_size // self.num_heads

    @property
    def group_size(self) -> int:
        """Query heads per key/value head (1 without grouped-query attention)."""
        return self.num_heads // self.num_kv_heads if self.num_kv_heads else 1

    def describe(self) -> str:
        groups = f" in {self.num_kv_heads} key/value groups" if self.num_kv_heads else ""
        return (
            f"{self.name} ({self.family}: hidden {self.hidden_size}, {self.num_heads} heads of "
            f"{self.head_size}{groups}, FFN {self.intermediate_size}, {self.num_layers} layers)"
        )


def read_model_dims(model: str) -> ModelDims:
    """A model's family and dimensions from its config.json, without loading any weights."""
    raw = _read_config(model)
    spec = family_for(raw.get("model_type"), model=f"teacher.model {model!r}")
    keys: ConfigKeys = spec.config_keys
    try:
        positions = raw.get(keys.max_positions)
        return ModelDims(
            name=model,
            family=spec.name,
            hidden_size=int(raw[keys.hidden_size]),
            num_heads=int(raw[keys.num_heads]),
            intermediate_size=int(raw[keys.intermediate_size]),
            num_layers=int(raw[keys.num_layers]),
            max_positions=int(positions) - spec.position_offset if positions else None,
            num_kv_heads=_kv_heads(raw, keys),
        )
    except KeyError as missing:
        raise ModelError(f"teacher.model {model!r}: its {spec.name} config has no {missing}") from None


def _kv_heads(raw: dict, keys: ConfigKeys) -> int | None:
    """Key/value heads where fewer than the query heads (grouped-query attention), else None."""
    kv_heads = raw.get(keys.num_kv_heads) if keys.num_kv_heads else None
    if kv_heads is None or int(kv_heads) == int(raw[keys.num_heads]):
        return None
    return int(kv_heads)


def _read_config(model: str) -> dict:
    path = Path(resolve_model(model))
    if path.is_dir():
        config_file = path / "config.json"
        if not config_file.is_file():
            raise ModelError(f"teacher.model {model!r}: no config.json in {path}")
        try:
            return json.loads(config_file.read_text())
        except (ValueError, UnicodeDecodeError) as exc:
            raise ModelError(f"teacher.model {model!r}: {config_file} is not valid JSON: {exc}") from exc
    return _hub_config(model)


def _hub_config(model: str) -> dict:
    # Only reached for hub ids: needs a network or the local HF cache.
    from transformers import AutoConfig

    try:
        return AutoConfig.from_pretrained(model).to_dict()
    except Exception as exc:  # transformers raises OSError, ValueError, HTTP errors...
        raise ModelError(
            f"teacher.model {model!r} is neither a built-in name ({', '.join(BUILTIN_MODELS)}), "
            f"a local model directory, nor a reachable hub id: {exc}"
        ) from exc


__all__ = ["FAMILIES", "ROLES", "FamilySpec", "ModelDims", "family_for", "family_of", "is_compacted",
           "read_model_dims", "supported_model_types"]
