"""Seed bands: runs interpolated onto one step grid, then a centre line and a spread per grid step.

Pure numpy/scipy. ``Y`` has shape ``[n_runs, n_grid]`` with NaN where a run has no value at a grid step.
Per grid column, over the ``n`` runs with a finite value:

* ``mean = sum(y) / n``; ``median``; ``min``; ``max``;
* ``std = sqrt(sum((y - mean)^2) / (n - 1))`` (sample std, NaN for n < 2); ``sem = std / sqrt(n)``;
* 95 % CI of the mean, t-based: ``mean ± t_{0.975, n-1} * sem`` (NaN for n < 2).

Interpolation (as Aim does for runs that log at different steps): each run's series is linearly
interpolated at the grid steps inside its own logged range ``[first step, last step]``; outside it the run
contributes nothing (no extrapolation), so a shorter run simply drops out of the band where it ends.
"""
from __future__ import annotations

from tracer_core.lazy import lazy

np = lazy("numpy")

CENTERS = ("mean", "median")
SPREADS = ("std", "sem", "ci95", "minmax")


def interpolate_to_grid(steps, values, grid) -> np.ndarray:
    """``values`` (logged at increasing ``steps``) linearly interpolated at ``grid``; NaN outside the run's
    range. Non-finite logged values are dropped before interpolating."""
    s, v, g = (np.asarray(a, dtype=np.float64) for a in (steps, values, grid))
    ok = np.isfinite(v)
    s, v = s[ok], v[ok]
    out = np.full(g.shape, np.nan)
    if len(s) == 0:
        return out
    inside = (g >= s[0]) & (g <= s[-1])
    out[inside] = np.interp(g[inside], s, v)
    return out


def band_stats(Y) -> dict[str, np.ndarray]:
    """Per-column statistics of ``Y [n_runs, n_grid]`` (module docstring): n, mean, median, std, sem,
    ci_lo, ci_hi, min, max. Columns with no finite value give NaN (n = 0)."""
    from scipy.stats import t as student_t
    Y = np.asarray(Y, dtype=np.float64)
    ok = np.isfinite(Y)
    n = ok.sum(axis=0)
    safe = np.where(ok, Y, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = safe.sum(axis=0) / n
        sq = np.where(ok, (Y - mean) ** 2, 0.0).sum(axis=0)
        std = np.where(n >= 2, np.sqrt(sq / np.maximum(n - 1, 1)), np.nan)
        sem = std / np.sqrt(n)
        tq = np.where(n >= 2, student_t.ppf(0.975, np.maximum(n - 1, 1)), np.nan)
    any_ok = n > 0
    nan_row = np.full(Y.shape[1], np.nan)
    lo = np.where(any_ok, np.min(np.where(ok, Y, np.inf), axis=0), np.nan) if Y.size else nan_row
    hi = np.where(any_ok, np.max(np.where(ok, Y, -np.inf), axis=0), np.nan) if Y.size else nan_row
    med = np.full(Y.shape[1], np.nan)
    if any_ok.any():
        med[any_ok] = np.nanmedian(np.where(ok, Y, np.nan)[:, any_ok], axis=0)
    return {"n": n, "mean": mean, "median": med, "std": std, "sem": sem, "ci_lo": mean - tq * sem,
            "ci_hi": mean + tq * sem, "min": lo, "max": hi}


def band_lines(stats: dict[str, np.ndarray], center: str = "mean", spread: str = "std"):
    """``(centre, lower, upper)`` for a choice of centre (mean | median) and spread (std | sem | ci95 |
    minmax). std/sem/ci95 are spreads of the mean and are drawn around the chosen centre."""
    if center not in CENTERS:
        raise ValueError(f"band center must be one of {', '.join(CENTERS)}, got {center!r}")
    if spread not in SPREADS:
        raise ValueError(f"band spread must be one of {', '.join(SPREADS)}, got {spread!r}")
    c = stats[center]
    if spread == "minmax":
        return c, stats["min"], stats["max"]
    half = {"std": stats["std"], "sem": stats["sem"], "ci95": stats["ci_hi"] - stats["mean"]}[spread]
    return c, c - half, c + half
