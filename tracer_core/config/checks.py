"""The config's error type and the range/number checks every section's ``validate`` uses; the message always
names the dotted key ("teacher.beta must be in [0, 1], got 2.0")."""
from __future__ import annotations

import math
from dataclasses import fields
from typing import Any, Sequence


class ConfigError(ValueError):
    """A configuration value or key is invalid; the message says which and why."""


def check(cond: bool, msg: str) -> None:
    if not cond:
        raise ConfigError(msg)


def check_range(section: str, obj: Any, names: str | Sequence[str], *, ge: float | None = None,
                gt: float | None = None, le: float | None = None, lt: float | None = None, why: str = "") -> None:
    """Each field ``names`` of ``obj`` must satisfy the bounds (ge: >=, gt: >, le: <=, lt: <; NaN fails).
    The error names the key: "loss.alpha_fd must be >= 0, got -1.0", "teacher.beta must be in [0, 1], got 2.0"."""
    lo, hi = (ge if ge is not None else gt), (le if le is not None else lt)
    if lo is not None and hi is not None:
        rule = f"in {'[' if ge is not None else '('}{lo:g}, {hi:g}{']' if le is not None else ')'}"
    elif lo is not None:
        rule = f"{'>=' if ge is not None else '>'} {lo:g}"
    else:
        rule = f"{'<=' if le is not None else '<'} {hi:g}"
    for name in [names] if isinstance(names, str) else names:
        v = getattr(obj, name)
        ok = ((ge is None or v >= ge) and (gt is None or v > gt) and (le is None or v <= le)
              and (lt is None or v < lt))
        check(ok, f"{section}.{name} must be {rule}{why}, got {v}")


SEED_MAX = 2**32 - 1     # numpy's and torch's seed range; a seed outside it fails only when the run seeds


def check_numbers(section: str, obj: Any) -> None:
    """Every float field finite (Infinity/NaN in JSON parse, then fail only at step 1 or silently), every
    ``seed`` field in 0..2**32-1; the message names the key."""
    for f in fields(obj):
        v = getattr(obj, f.name)
        if isinstance(v, float):
            check(math.isfinite(v), f"{section}.{f.name} must be a finite number, got {v}")
        if f.name == "seed":
            check(isinstance(v, int) and 0 <= v <= SEED_MAX, f"{section}.seed must be in [0, 2**32-1], got {v}")

