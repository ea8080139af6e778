"""Series summaries (spec §5.2), computed on the raw series (numpy only, no torch).

    last_value      the final value
    auc_normalized  trapz(value, step) / (step_last - step_first + 1e-9)   (time-averaged value)
    early_slope     least-squares slope over the first n = max(10, floor(0.1 N)) points
    half_life_step  first step with value <= 0.5 value[0]; None if never, or if value[0] <= 0

Units: steps are optimizer steps (every step is logged). The reference's CSVs log one wandb step per ~5
iterations (§5.1), so its early slopes are ~5x ours per step and its half-lives ~1/5 of ours in steps;
auc_normalized is unit-free. Non-finite values are dropped before summarising (the reference would
propagate a NaN into the summary; a run with a NaN loss stops with an error here anyway).
"""
from __future__ import annotations

from tracer_core.lazy import lazy

import math
from typing import Sequence

np = lazy("numpy")


def _arrays(steps: Sequence[float], values: Sequence[float]):
    s = np.asarray(steps, dtype=np.float64)
    v = np.asarray(values, dtype=np.float64)
    keep = np.isfinite(v)
    return s[keep], v[keep]


def last_value(steps, values) -> float | None:
    _, v = _arrays(steps, values)
    return float(v[-1]) if len(v) else None


def auc_normalized(steps, values) -> float | None:
    s, v = _arrays(steps, values)
    if len(v) == 0:
        return None
    if len(v) == 1:
        return float(v[0])
    area = float(np.sum((v[1:] + v[:-1]) * np.diff(s)) / 2.0)   # trapezoid rule
    return area / (s[-1] - s[0] + 1e-9)


def early_slope(steps, values) -> float | None:
    s, v = _arrays(steps, values)
    n = max(10, math.floor(0.1 * len(v)))
    s, v = s[:n], v[:n]
    if len(v) < 2 or np.ptp(s) == 0:
        return None
    return float(np.polyfit(s, v, 1)[0])


def half_life_step(steps, values) -> float | None:
    s, v = _arrays(steps, values)
    if len(v) == 0 or v[0] <= 0:
        return None
    hit = np.nonzero(v <= 0.5 * v[0])[0]
    return float(s[hit[0]]) if len(hit) else None


def best_value(steps, values, higher_is_better: bool = True) -> float | None:
    _, v = _arrays(steps, values)
    if len(v) == 0:
        return None
    return float(v.max() if higher_is_better else v.min())


def summarize(steps, values) -> dict[str, float | None]:
    """All four spec summaries of one series."""
    return {"last_value": last_value(steps, values), "auc_normalized": auc_normalized(steps, values),
            "early_slope": early_slope(steps, values), "half_life_step": half_life_step(steps, values)}
