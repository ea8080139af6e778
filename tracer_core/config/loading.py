"""Where configs come from: named JSON presets (partial dicts over the defaults), config files, and dotted
``key=value`` overrides applied last."""
from __future__ import annotations

import difflib
import json
from pathlib import Path
from typing import Any, Sequence

from .checks import ConfigError, check
from .parsing import set_dotted
from .run import RunConfig

PRESET_DIR = Path(__file__).parent.parent / "configs"      # tracer_core/configs/*.json


def apply_overrides(cfg: RunConfig, overrides: Sequence[str]) -> RunConfig:
    """Apply ``key=value`` strings (``teacher.beta=0.3``); values are parsed as JSON where possible."""
    d = cfg.to_dict()
    for item in overrides:
        check("=" in item, f"override {item!r} must look like key=value (e.g. teacher.beta=0.3)")
        key, text = item.split("=", 1)
        set_dotted(d, key.strip(), text.strip(), parse_strings=True)
    return RunConfig.from_dict(d)


# -- presets -----------------------------------------------------------------------------------

def list_presets() -> list[str]:
    return sorted(p.stem for p in PRESET_DIR.glob("*.json"))


def preset_description(name: str) -> str:
    return str(_read_preset(name).get("_description", ""))


def _read_preset(name: str) -> dict[str, Any]:
    path = PRESET_DIR / f"{name}.json"
    if not path.exists():
        close = difflib.get_close_matches(name, list_presets(), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ConfigError(f"unknown preset {name!r}{hint}; available: {', '.join(list_presets())}")
    return json.loads(path.read_text())


def load_preset(name: str, overrides: Sequence[str] = ()) -> RunConfig:
    """Defaults, then the preset's partial dict, then the dotted overrides."""
    raw = {k: v for k, v in _read_preset(name).items() if not k.startswith("_")}
    raw.setdefault("preset", name)
    raw.setdefault("name", name)
    cfg = RunConfig.from_dict(raw)
    return apply_overrides(cfg, overrides) if overrides else cfg


def load_config_file(path: str | Path, overrides: Sequence[str] = ()) -> RunConfig:
    cfg = RunConfig.from_dict(json.loads(Path(path).read_text()))
    return apply_overrides(cfg, overrides) if overrides else cfg
