"""The command line that reproduces a run: ``python -m tracer_core train --preset P --set key=value ...``.

Torch-free (the dashboard shows it under each run). The overrides are exactly the keys whose values differ
from the preset the run names (or, for a run without a known preset, from the preset of its method), so
``load_preset(P, overrides)`` rebuilds the identical :class:`~tracer_core.config.RunConfig`; values are
written so that the CLI's parser (:func:`~tracer_core.config.parse_value`) reads them back unchanged, and
quoted for a POSIX shell.
"""
from __future__ import annotations

import json
import shlex
from typing import Any, Mapping

from .config import RunConfig, flatten, list_presets, load_preset, parse_value

__all__ = ["override_args", "cli_command"]


def _text(value: Any) -> str:
    """A value as the CLI's ``--set`` parser reads it back: raw text for plain strings, JSON otherwise."""
    if isinstance(value, str) and parse_value(value) == value:
        return value
    return json.dumps(value)


def _as_config(config: RunConfig | Mapping[str, Any] | str) -> RunConfig:
    if isinstance(config, RunConfig):
        return config
    return RunConfig.from_dict(json.loads(config) if isinstance(config, str) else config)


def override_args(config: RunConfig | Mapping[str, Any] | str) -> tuple[str, list[str]]:
    """(preset, ["key=value", ...]) such that ``load_preset(preset, overrides) == config``."""
    cfg = _as_config(config)
    presets = list_presets()
    preset = next((p for p in (cfg.preset, cfg.method) if p in presets), "flyp")
    base, want = flatten(load_preset(preset).to_dict()), flatten(cfg.to_dict())
    return preset, [f"{key}={_text(value)}" for key, value in want.items() if base.get(key) != value]


def cli_command(config: RunConfig | Mapping[str, Any] | str, nproc: int = 1) -> str:
    """The shell command for one run; ``nproc > 1`` gives the torchrun form (data.batch_size stays global)."""
    preset, overrides = override_args(config)
    launcher = "python -m" if nproc <= 1 else f"torchrun --nproc_per_node={int(nproc)} -m"
    parts = [f"{launcher} tracer_core train --preset {shlex.quote(preset)}"]
    parts += [f"--set {shlex.quote(o)}" for o in overrides]
    return " \\\n    ".join(parts)
