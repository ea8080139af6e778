"""Building dataclasses from dicts with strict checks (unknown keys and wrong types are rejected with the
dotted key and a close match), dotted keys, and the parsing of ``key=value`` override text."""
from __future__ import annotations

import dataclasses
import difflib
import json
import typing
from dataclasses import fields
from typing import Any, Mapping

from .checks import ConfigError, check


def _coerce(value: Any, tp: Any, key: str) -> Any:
    origin = typing.get_origin(tp)
    if origin is tuple:
        check(isinstance(value, (list, tuple)), f"{key}: expected a list, got {type(value).__name__} {value!r}")
        (item_tp, _) = typing.get_args(tp)
        return tuple(_coerce(v, item_tp, f"{key}[]") for v in value)
    if tp is bool:
        check(isinstance(value, bool), f"{key}: expected true/false, got {value!r}")
        return value
    if tp is int:
        check(isinstance(value, int) and not isinstance(value, bool), f"{key}: expected an integer, got {value!r}")
        return value
    if tp is float:
        check(isinstance(value, (int, float)) and not isinstance(value, bool), f"{key}: expected a number, got {value!r}")
        return float(value)
    if tp is str:
        check(isinstance(value, str), f"{key}: expected a string, got {value!r}")
        return value
    raise ConfigError(f"{key}: unsupported field type {tp}")


def build(cls: type, d: Mapping[str, Any], prefix: str) -> Any:
    check(isinstance(d, Mapping), f"{prefix or 'config'}: expected an object, got {d!r}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in fields(cls)]
    kwargs: dict[str, Any] = {}
    for key, value in d.items():
        full = f"{prefix}{key}"
        if key not in names:
            close = difflib.get_close_matches(key, names, n=1)
            hint = f" (did you mean {prefix}{close[0]}?)" if close else f" (known: {', '.join(names)})"
            raise ConfigError(f"unknown config key {full!r}{hint}")
        tp = hints[key]
        if dataclasses.is_dataclass(tp):
            kwargs[key] = build(tp, value, prefix=f"{full}.")
        else:
            kwargs[key] = _coerce(value, tp, full)
    try:
        return cls(**kwargs)
    except TypeError as e:  # pragma: no cover - defensive, keys are checked above
        raise ConfigError(str(e)) from None


def flatten(cfg: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """{"teacher": {"beta": 0.5}} -> {"teacher.beta": 0.5} (the dotted keys of overrides and config diffs)."""
    out: dict[str, Any] = {}
    for k, v in cfg.items():
        if isinstance(v, Mapping):
            out.update(flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def parse_value(text: str) -> Any:
    """Parse an override value: JSON literal if it parses (1, 0.5, true, [1,2], "x"), else the raw string."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        if "," in text:
            return [t.strip() for t in text.split(",") if t.strip()]
        return text


def set_dotted(d: dict, key: str, value: Any, parse_strings: bool) -> None:
    parts = key.split(".")
    node = d
    for i, p in enumerate(parts[:-1]):
        check(isinstance(node.get(p), dict), f"unknown config section {'.'.join(parts[:i + 1])!r} in {key!r}")
        node = node[p]
    leaf = parts[-1]
    if leaf not in node:
        close = difflib.get_close_matches(leaf, list(node), n=1)
        hint = f" (did you mean {'.'.join(parts[:-1] + [close[0]])}?)" if close else ""
        raise ConfigError(f"unknown config key {key!r}{hint}")
    if parse_strings and isinstance(value, str):
        value = parse_value(value)
        # a string field should keep a numeric-looking string as a string ("name=123")
        if isinstance(node[leaf], str) and not isinstance(value, str):
            value = json.dumps(value) if not isinstance(value, list) else ",".join(map(str, value))
        if isinstance(node[leaf], list) and not isinstance(value, list):
            value = [value]
    node[leaf] = value
