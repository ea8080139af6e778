"""Seed bands over groups of runs (takes a DuckDB cursor; never imports duckdb).

Each run's *full* series is read (and smoothed, if asked, on the full series), then linearly interpolated
onto one step grid shared by every group of the request (runs that log at different steps are interpolated,
as Aim does, instead of dropping the steps that not every run has; see :mod:`tracer_core.metrics.bands`).
The grid is the union of the logged steps when it holds at most ``max_points`` steps, else ``max_points``
evenly spaced integer steps over the request's step range.
"""
from __future__ import annotations

from tracer_core.lazy import lazy

from typing import Mapping, Sequence

np = lazy("numpy")
pd = lazy("pandas")

from tracer_core.metrics.bands import CENTERS, SPREADS, band_lines, band_stats, interpolate_to_grid

from .series_rows import fetch_rows, request_params

COLUMNS = ["group", "step", "center", "lo", "hi", "n", "mean", "median", "std", "sem", "ci_lo", "ci_hi",
           "min", "max"]


def _full_series(cur, runs: list[str], name: str, context: str) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """run_id -> (steps, values) of its full series, in step order; a step logged twice: the later row wins.
    One scan as numpy columns (store/series_rows.py), no SQL ORDER BY of the rows."""
    r = fetch_rows(cur, request_params(runs, [name], [context], None))
    out = {}
    for k, (rid, _, _) in enumerate(r.keys):
        s, v = r.step[r.starts[k]:r.starts[k + 1]], r.value[r.starts[k]:r.starts[k + 1]]
        last = np.concatenate([s[1:] != s[:-1], [True]])          # the last row of each step
        out[rid] = (s[last], v[last])
    return out


def _grid(series: Mapping[str, tuple[np.ndarray, np.ndarray]], max_points: int | None, step_range) -> np.ndarray:
    steps = np.unique(np.concatenate([s for s, _ in series.values()])) if series else np.array([], np.int64)
    lo, hi = step_range if step_range is not None else (None, None)
    if lo is not None:
        steps = steps[steps >= lo]
    if hi is not None:
        steps = steps[steps <= hi]
    if max_points is None or len(steps) <= max_points:
        return steps
    return np.unique(np.round(np.linspace(steps[0], steps[-1], max_points)).astype(np.int64))


def band(cur, groups: Mapping[str, Sequence[str]], name: str, context: str = "", *, center: str = "mean",
         spread: str = "std", smoothing=None, max_points: int | None = 1000, step_range=None) -> pd.DataFrame:
    """One row per group and grid step: ``center``/``lo``/``hi`` for the chosen centre (mean | median) and
    spread (std | sem | ci95 | minmax), plus every statistic (n, mean, median, std, sem, ci_lo, ci_hi, min,
    max) so a chart can switch without a new query. Steps where no run of the group has a value are left out.
    """
    if center not in CENTERS or spread not in SPREADS:    # before reading any series
        raise ValueError(f"band center must be one of {CENTERS} and spread one of {SPREADS}, "
                         f"got {center!r}, {spread!r}")
    if max_points is not None and max_points < 2:
        raise ValueError(f"max_points must be >= 2 for a band, got {max_points}")
    runs = list(dict.fromkeys(r for rs in groups.values() for r in rs))
    series = _full_series(cur, runs, name, context)
    if smoothing is not None:
        series = {r: (s, smoothing.apply(v)) for r, (s, v) in series.items()}
    grid = _grid(series, max_points, step_range)
    frames = []
    for gid, members in groups.items():
        Y = [interpolate_to_grid(*series[r], grid) for r in dict.fromkeys(members) if r in series]
        if not Y or not len(grid):
            continue
        stats = band_stats(np.vstack(Y))
        c, lo, hi = band_lines(stats, center, spread)
        df = pd.DataFrame({"group": gid, "step": grid, "center": c, "lo": lo, "hi": hi, **stats})
        frames.append(df[df["n"] > 0])
    if not frames:
        return pd.DataFrame(columns=COLUMNS)
    return pd.concat(frames, ignore_index=True)[COLUMNS]
