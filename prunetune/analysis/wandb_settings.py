"""Where and how a run logs to Weights & Biases: one rule for the trials and the summary.

Kept free of wandb, ray and torch so that both the search's per-trial callback and the
analysis can import it cheaply.

Mode, first match wins:

1. disabled: ``--no-wandb``, ``output.wandb.enabled: false``, ``output.wandb.mode:
   disabled``, or ``WANDB_MODE=disabled`` / ``WANDB_DISABLED=true`` in the environment;
2. ``output.wandb.mode: offline`` or ``online``, as written;
3. ``auto`` (the default): ``WANDB_MODE`` when it says online or offline, else online when
   ``WANDB_API_KEY`` is set, else offline.

Offline runs are complete run directories under ``RUN_DIR/wandb/offline-run-*``;
``wandb sync`` uploads them later. The API key is only ever read by wandb from the
environment: nothing here stores or passes it on.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from prunetune.errors import ConfigError
from prunetune.names import WANDB_DIR

Mode = Literal["online", "offline", "disabled"]
MODES = ("auto", "online", "offline", "disabled")
DEFAULT_PROJECT = "prunetune"
WANDB_SUBDIR = WANDB_DIR  # where wandb.init(dir=run_dir) writes its run folders


@dataclass(frozen=True)
class WandbSettings:
    mode: Mode
    reason: str
    project: str
    entity: str | None
    group: str
    run_dir: Path

    @property
    def enabled(self) -> bool:
        return self.mode != "disabled"

    @property
    def wandb_dir(self) -> Path:
        """Where wandb writes its run folders (``wandb.init(dir=run_dir)`` adds ``wandb/``)."""
        return self.run_dir / WANDB_SUBDIR

    def init_kwargs(self, *, name: str, job_type: str, run_id: str | None = None,
                    config: dict | None = None) -> dict[str, Any]:
        """Arguments of ``wandb.init`` for one run of this search (quiet: prunetune prints its own lines)."""
        import wandb

        self.run_dir.mkdir(parents=True, exist_ok=True)
        return dict(
            project=self.project,
            entity=self.entity,
            group=self.group,
            name=name,
            id=run_id,
            job_type=job_type,
            config=config or {},
            dir=str(self.run_dir),
            mode=self.mode,
            reinit="create_new",
            resume="allow" if run_id else None,
            settings=wandb.Settings(
                silent=True, console="off", x_disable_stats=True, disable_git=True,
                save_code=False, x_save_requirements=False,
            ),
        )


def wandb_settings(config: Any, run_dir: str | Path, *, enabled: bool = True,
                   environ: Mapping[str, str] | None = None) -> WandbSettings:
    """Resolve the W&B mode, project and group of the search in ``run_dir`` (see module docs)."""
    environ = os.environ if environ is None else environ
    run_dir = Path(run_dir).resolve()
    section = wandb_section(config)
    mode, reason = _mode(section, enabled=enabled, environ=environ)
    return WandbSettings(
        mode=mode,
        reason=reason,
        project=str(section.get("project") or environ.get("WANDB_PROJECT") or DEFAULT_PROJECT),
        entity=section.get("entity") or environ.get("WANDB_ENTITY") or None,
        group=run_dir.name,
        run_dir=run_dir,
    )


def wandb_section(config: Any) -> dict[str, Any]:
    """``output.wandb`` of a config given as a mapping or a pydantic model."""
    raw = config_dict(config)
    section = ((raw or {}).get("output") or {}).get("wandb") or {}
    if not isinstance(section, dict):
        raise ConfigError(f"output.wandb = {section!r}: expected a mapping (enabled, project, entity, mode)")
    mode = section.get("mode", "auto")
    if mode not in MODES:
        raise ConfigError(f"output.wandb.mode = {mode!r}: expected one of {', '.join(MODES)}")
    return section


def config_dict(config: Any) -> dict[str, Any]:
    """A config given as a mapping, a :class:`prunetune.config.Config` or another pydantic model, as a dict."""
    if hasattr(config, "to_dict"):
        return config.to_dict()
    if hasattr(config, "model_dump"):
        return config.model_dump(mode="json")
    return dict(config or {})


def _mode(section: dict[str, Any], *, enabled: bool, environ: Mapping[str, str]) -> tuple[Mode, str]:
    if not enabled:
        return "disabled", "--no-wandb"
    if section.get("enabled") is False:
        return "disabled", "output.wandb.enabled is false"
    configured = section.get("mode", "auto")
    if configured == "disabled":
        return "disabled", "output.wandb.mode is disabled"
    env_mode = environ.get("WANDB_MODE", "").strip().lower()
    if env_mode == "disabled" or environ.get("WANDB_DISABLED", "").strip().lower() in ("true", "1"):
        return "disabled", "W&B is disabled in the environment (WANDB_MODE / WANDB_DISABLED)"
    if configured in ("online", "offline"):
        return configured, f"output.wandb.mode is {configured}"
    if env_mode in ("online", "offline"):
        return env_mode, f"WANDB_MODE is {env_mode}"
    if environ.get("WANDB_API_KEY"):
        return "online", "WANDB_API_KEY is set"
    return "offline", "not logged in (no WANDB_API_KEY): runs are kept offline"


def offline_run_dirs(run_dir: str | Path) -> list[Path]:
    return sorted((Path(run_dir) / WANDB_SUBDIR).glob("offline-run-*"))


def sync_command(run_dir: str | Path) -> str:
    """The command that uploads every offline run of the search."""
    return f"wandb sync {Path(run_dir) / WANDB_SUBDIR}/offline-run-*"


def run_id(group: str, name: str) -> str:
    """A W&B run id that is stable for (search, trial), so a resumed trial continues its run."""
    text = re.sub(r"[^A-Za-z0-9_-]+", "-", f"{group}-{name}").strip("-")
    return text[-64:]
