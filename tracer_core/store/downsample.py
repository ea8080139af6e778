"""Series reads with server-side min/max downsampling (takes a DuckDB cursor; never imports duckdb).

A series with more than ``max_points`` rows is cut into ``nb`` equal-width step buckets and each bucket
keeps the rows of its minimum and its maximum finite value; the series' first point, last point and first
NaN (a divergence stays visible) are kept too. **One grid per request**: the buckets span the step range of
*all* series in the request (a panel), so a 300-step and a 30,000-step run are cut at the same steps (the
grid is in ``df.attrs["grid"]``). A series with at most ``max_points`` rows is returned whole. So:

* spikes survive (unlike averaging or striding), and every returned row is a real logged point;
* the true global min and max of each series are always present;
* each series returns at most ``2 * nb + 3 <= max_points`` rows.

Two hash-aggregate scans (the panel's step range, then the buckets), no sort of the raw rows: ~0.1 s for
20 series x 100k points on 2 cores (bench/bench_store.py).

**Smoothing** (``smoothing=Smoothing(...)``, :mod:`tracer_core.metrics.smoothing`) is computed on each full
logged series (the whole history, also for a zoomed step range: an EMA depends on its past) *before* the
points are chosen, and returned as a ``smoothed`` column at the returned steps: the smoothed curve is the
same whether 300 or 300,000 points were logged or shown.
"""
from __future__ import annotations

from tracer_core.lazy import lazy

from typing import Any, Mapping, Sequence

np = lazy("numpy")
pd = lazy("pandas")

KEYS = ["run_id", "name", "context"]

_FILTER = """
  SELECT run_id, name, context, step, value, wall_time FROM series
  WHERE list_contains($runs::VARCHAR[], run_id)
    AND ($names::VARCHAR[] IS NULL OR list_contains($names::VARCHAR[], name))
    AND ($contexts::VARCHAR[] IS NULL OR list_contains($contexts::VARCHAR[], context))
    AND ($lo::BIGINT IS NULL OR step >= $lo::BIGINT) AND ($hi::BIGINT IS NULL OR step <= $hi::BIGINT)
"""

_RANGE = f"SELECT min(step) AS s0, max(step) AS s1 FROM ({_FILTER})"

_FINITE = "FILTER (WHERE NOT isnan(s.value))"
_BUCKETS = f"""
SELECT s.run_id, s.name, s.context, ((s.step - $s0::BIGINT) * $nb) // ($s1::BIGINT - $s0::BIGINT + 1) AS bucket,
       count(*) AS n,
       arg_min(s.step, s.value) {_FINITE} AS s_lo, min(s.value) {_FINITE} AS v_lo,
       arg_max(s.step, s.value) {_FINITE} AS s_hi, max(s.value) {_FINITE} AS v_hi,
       min(s.step) AS s_first, arg_min(s.value, s.step) AS v_first,
       max(s.step) AS s_last, arg_max(s.value, s.step) AS v_last,
       min(s.step) FILTER (WHERE isnan(s.value)) AS s_nan
FROM ({_FILTER}) s GROUP BY ALL
"""


def as_list(x: Any) -> list | None:
    """None stays None (no filter); a scalar becomes a one-element list."""
    if x is None:
        return None
    if isinstance(x, (str, int, float)):
        return [x]
    return list(x)


def _params(run_ids, names, contexts, step_range) -> dict[str, Any]:
    lo, hi = step_range if step_range is not None else (None, None)
    return {"runs": as_list(run_ids) or [], "names": as_list(names), "contexts": as_list(contexts),
            "lo": lo, "hi": hi}


def series(cur, run_ids, names=None, contexts=None, *, max_points: int | None = 1000,
           step_range: tuple[int | None, int | None] | None = None, smoothing=None) -> pd.DataFrame:
    """Rows (run_id, name, context, step, value[, smoothed]) sorted by series and step.

    ``max_points=None`` returns every row (plus wall_time); otherwise each series is downsampled to at most
    ``max_points`` rows (>= 2; below 5 only the finite global min and max rows are kept) on one step grid
    for the whole request. ``step_range=(lo, hi)`` (a zoom) limits the rows and the grid to that range, so
    a range holding at most ``max_points`` rows per series comes back at full resolution.
    ``smoothing``: a :class:`~tracer_core.metrics.smoothing.Smoothing`, applied to the full series.
    """
    params = _params(run_ids, names, contexts, step_range)
    if max_points is None:
        out = cur.execute(_FILTER + " ORDER BY run_id, name, context, step", params).df()
        return _smoothed(cur, params, out, smoothing)
    if max_points < 2:
        raise ValueError(f"max_points must be >= 2, got {max_points}")
    ends = max_points >= 5
    nb = (max_points - 3) // 2 if ends else 1
    s0, s1 = cur.execute(_RANGE, params).fetchone()
    grid = {"start": s0, "stop": s1, "buckets": nb}
    if s0 is None:
        out = pd.DataFrame(columns=KEYS + ["step", "value"])
    else:
        b = cur.execute(_BUCKETS, {**params, "nb": nb, "s0": s0, "s1": s1}).df()
        b["total"] = b.groupby(KEYS)["n"].transform("sum")
        small, big = b[b["total"] <= max_points], b[b["total"] > max_points]
        parts = [p for p in [_raw_rows(cur, params, small), *_bucket_rows(big, ends)] if len(p)]
        out = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=KEYS + ["step", "value"])
        out = out.drop_duplicates().sort_values(KEYS + ["step"], kind="stable").reset_index(drop=True)
    out = _smoothed(cur, params, out, smoothing)
    out.attrs["grid"] = grid
    return out


def grid_bucket(steps, grid: Mapping[str, Any]):
    """The grid bucket of each step (the formula of the bucket query), for callers and tests."""
    return ((pd.Series(steps, dtype="int64") - grid["start"]) * grid["buckets"]) // \
        (grid["stop"] - grid["start"] + 1)


_FULL = f"""
SELECT k.i, f.step, f.value FROM ({_FILTER}) f
JOIN (SELECT unnest($kr::VARCHAR[]) AS run_id, unnest($kn::VARCHAR[]) AS name, unnest($kc::VARCHAR[]) AS context,
             generate_subscripts($kr::VARCHAR[], 1) AS i) k USING (run_id, name, context)
"""


def _smoothed(cur, params: dict, out: pd.DataFrame, smoothing) -> pd.DataFrame:
    """Add ``smoothed``: the smoothing of each *full* series (no step range) at the rows of ``out``.

    One query returns every full series as (series index, step, value) numpy columns, sorted by numpy
    (a stable sort: on 2 cores several times cheaper than the SQL ORDER BY of millions of rows); each
    series is smoothed in one vectorised call and read back at the returned steps (a step logged twice:
    one of its rows)."""
    if smoothing is None:
        return out
    if out.empty:
        return out.assign(smoothed=pd.Series(dtype="float64"))
    keys = out[KEYS].drop_duplicates().reset_index(drop=True)
    full = cur.execute(_FULL, {**params, "lo": None, "hi": None, "runs": keys.run_id.unique().tolist(),
                               "kr": keys.run_id.tolist(), "kn": keys.name.tolist(),
                               "kc": keys.context.tolist()}).fetchnumpy()
    idx, steps, vals = (np.asarray(full[c]) for c in ("i", "step", "value"))
    order = np.lexsort((steps, idx))
    idx, steps, vals = idx[order], steps[order], vals[order]
    cuts = np.searchsorted(idx, np.arange(1, len(keys) + 2))      # idx is 1-based and sorted
    pos = out.merge(keys.reset_index(names="k"), on=KEYS, how="left")["k"].to_numpy()
    result = np.full(len(out), np.nan)
    out_steps = out["step"].to_numpy(np.int64)
    for k in range(len(keys)):
        lo, hi = cuts[k], cuts[k + 1]
        sel = np.flatnonzero(pos == k)
        if hi <= lo or not len(sel):
            continue
        sm = smoothing.apply(vals[lo:hi])
        at = np.searchsorted(steps[lo:hi], out_steps[sel], side="right") - 1
        result[sel] = sm[at]
    return out.assign(smoothed=result)


def _raw_rows(cur, params: dict, small: pd.DataFrame) -> pd.DataFrame:
    """Every row of the series that need no downsampling (fetched with narrowed filters, then exact keys)."""
    cols = KEYS + ["step", "value"]
    if small.empty:
        return pd.DataFrame(columns=cols)
    keys = small[KEYS].drop_duplicates()
    narrowed = {**params, "runs": keys.run_id.unique().tolist(), "names": keys.name.unique().tolist(),
                "contexts": keys.context.unique().tolist()}
    raw = cur.execute(_FILTER, narrowed).df()[cols]
    return raw.merge(keys, on=KEYS)


def _bucket_rows(b: pd.DataFrame, ends: bool) -> list[pd.DataFrame]:
    if b.empty:
        return []
    pick = lambda s, v, frame: frame[KEYS + [s, v]].rename(columns={s: "step", v: "value"})  # noqa: E731
    rows = [pick("s_lo", "v_lo", b), pick("s_hi", "v_hi", b)]
    if ends:
        g = b.groupby(KEYS, sort=False)
        rows.append(pick("s_first", "v_first", b.loc[g["s_first"].idxmin()]))
        rows.append(pick("s_last", "v_last", b.loc[g["s_last"].idxmax()]))
        nan = b.dropna(subset=["s_nan"])
        if len(nan):
            first_nan = nan.loc[nan.groupby(KEYS, sort=False)["s_nan"].idxmin()]
            rows.append(first_nan[KEYS + ["s_nan"]].rename(columns={"s_nan": "step"}).assign(value=float("nan")))
    out = [r.dropna(subset=["step"]) for r in rows]
    for r in out:
        r["step"] = r["step"].astype("int64")
    return out


_BAND = """
WITH g AS (SELECT unnest($runs::VARCHAR[]) AS run_id, unnest($groups::VARCHAR[]) AS "group")
SELECT g."group", s.step, avg(s.value) AS mean, stddev_samp(s.value) AS std, min(s.value) AS lo,
       max(s.value) AS hi, count(*) AS n
FROM series s JOIN g USING (run_id) WHERE s.name = $name AND s.context = $context
GROUP BY ALL ORDER BY 1, 2
"""


def seed_band(cur, groups: Mapping[str, Sequence[str]], name: str, context: str = "", *,
              max_points: int | None = 1000) -> pd.DataFrame:
    """Per group and step: mean, sample std (NaN for one run), min, max and n over the group's runs.

    Downsampled per group like :func:`series`: each step bucket keeps the rows holding the extremes of
    the mean, of the lower band (lo) and of the upper band (hi), so at most ``max_points`` (>= 6) rows.
    """
    if max_points is not None and max_points < 6:
        raise ValueError(f"max_points must be >= 6 for a band, got {max_points}")
    runs = [r for rs in groups.values() for r in rs]
    grp = [g for g, rs in groups.items() for _ in rs]
    df = cur.execute(_BAND, {"runs": runs, "groups": grp, "name": name, "context": context}).df()
    if max_points is None or df.empty:
        return df
    return df.groupby("group", group_keys=False, sort=False)[df.columns.tolist()].apply(
        lambda d: _thin(d, max_points)).reset_index(drop=True)


def _thin(d: pd.DataFrame, max_points: int) -> pd.DataFrame:
    if len(d) <= max_points:
        return d
    nb = (max_points - 2) // 4
    s = d["step"].to_numpy()
    bucket = ((s - s[0]) * nb) // (s[-1] - s[0] + 1)
    keep = {d.index[0], d.index[-1]}
    by = d.groupby(bucket)
    for col, how in (("mean", "idxmin"), ("mean", "idxmax"), ("lo", "idxmin"), ("hi", "idxmax")):
        keep.update(getattr(by[col], how)().dropna())
    return d.loc[sorted(keep)]
