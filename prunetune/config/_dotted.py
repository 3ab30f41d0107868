"""Dotted keys (``trial.latency.seq_len``) over nested mappings."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from prunetune.config._secrets import redact_url
from prunetune.errors import ConfigError


def set_dotted(raw: dict[str, Any], dotted: str, value: Any) -> None:
    node = raw
    parts = dotted.split(".")
    if parts[0] == "space" and len(parts) > 2:  # the space's keys are dotted trial keys themselves
        parts = [parts[0], ".".join(parts[1:])]
    for part in parts[:-1]:
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        if not isinstance(child, dict):
            shown = redact_url(child) if isinstance(child, str) else child
            raise ConfigError(f"{dotted}: {part!r} holds {shown!r}, not a section")
        node = child
    node[parts[-1]] = value


def flatten_dotted(mapping: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"trial": {"latency": {"batch_size": 1}}}`` -> ``{"trial.latency.batch_size": 1}``."""
    flat: dict[str, Any] = {}
    for key, value in mapping.items():
        if isinstance(value, Mapping):
            flat.update(flatten_dotted(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def get_dotted(raw: dict[str, Any], dotted: str) -> Any:
    node: Any = raw
    for part in dotted.split("."):
        node = node[part]
    return node
