"""Series reads with server-side min/max downsampling (takes a DuckDB cursor; never imports duckdb).

A series with more than ``max_points`` rows is cut into ``nb`` equal-width step buckets and each bucket
keeps the rows of its minimum and its maximum finite value; the series' first point, last point and first
NaN (a divergence stays visible) are kept too. **One grid per request**: the buckets span the step range of
*all* series in the request (a panel), so a 300-step and a 30,000-step run are cut at the same steps (the
grid is in ``df.attrs["grid"]``). A series with at most ``max_points`` rows is returned whole. So:

* spikes survive (unlike averaging or striding), and every returned row is a real logged point;
* the true global min and max of each series are always present;
* each series returns at most ``2 * nb + 3 <= max_points`` rows.

**Smoothing** (``smoothing=Smoothing(...)``, :mod:`tracer_core.metrics.smoothing`) is computed on each full
logged series (the whole history, also for a zoomed step range: an EMA depends on its past) *before* the
points are chosen, and returned as a ``smoothed`` column at the returned steps: the smoothed curve is the
same whether 300 or 300,000 points were logged or shown.

**How** (profiled: bench/rows/store.py). Without smoothing, two scans: the request's step range, then one
hash aggregate per (series, bucket) keyed by DuckDB's 64-bit hash of the series key, not by its three
strings (grouping on the strings was over half of the old query), with a second hash per group that
detects two keys sharing one (then the exact path below); numpy picks the rows from the ~2 nb aggregated
rows per series. With smoothing (and for ``max_points=None``) the full series are needed anyway: one scan
fetches them as numpy columns (:mod:`.series_rows`), each is smoothed, and the same rows are bucketed in
numpy (:func:`_pick`, the same rows as the aggregate; tests/test_store_scale.py compares the two).
"""
from __future__ import annotations

from tracer_core.lazy import lazy

from typing import Any, Mapping, Sequence

from .series_rows import (_FILTER, _HASH, KEYS, Rows, as_list, fetch_rows, key_order, keys_at, request_params,
                          run_keys, segment_of, subset)

np = lazy("numpy")
pd = lazy("pandas")

__all__ = ["KEYS", "as_list", "series", "grid_bucket", "seed_band"]

_RANGE = f"SELECT min(step) AS s0, max(step) AS s1 FROM ({_FILTER})"
# fv: the value with NaN as NULL, so min/max/arg_min/arg_max skip it (DuckDB orders NaN above every number)
_BUCKETS = f"""
SELECT h, ((step - $s0::BIGINT) * $nb) // ($s1::BIGINT - $s0::BIGINT + 1) AS b, count(*) AS n,
       min(h2) = max(h2) AS one_key, arg_min(step, fv) AS s_lo, min(fv) AS v_lo, arg_max(step, fv) AS s_hi,
       max(fv) AS v_hi, min(step) AS s_first, arg_min_null(value, step) AS v_first, max(step) AS s_last,
       arg_max_null(value, step) AS v_last, min(step) FILTER (WHERE isnan(value)) AS s_nan
FROM (SELECT {_HASH} AS h, hash(name, context, run_id) AS h2, step, value,
             CASE WHEN isnan(value) THEN NULL ELSE value END AS fv FROM ({_FILTER}))
GROUP BY h, b
"""
_RAW = f"""SELECT h, step, value FROM (SELECT {_HASH} AS h, step, value FROM ({_FILTER}))
  WHERE list_contains($hs::UBIGINT[], h)"""


def series(cur, run_ids, names=None, contexts=None, *, max_points: int | None = 1000,
           step_range: tuple[int | None, int | None] | None = None, smoothing=None) -> pd.DataFrame:
    """Rows (run_id, name, context, step, value[, smoothed]) sorted by series and step.

    ``max_points=None`` returns every row (plus wall_time); otherwise each series is downsampled to at most
    ``max_points`` rows (>= 2; below 5 only the finite global min and max rows are kept) on one step grid
    for the whole request. ``step_range=(lo, hi)`` (a zoom) limits the rows and the grid to that range, so
    a range holding at most ``max_points`` rows per series comes back at full resolution.
    ``smoothing``: a :class:`~tracer_core.metrics.smoothing.Smoothing`, applied to the full series.
    """
    if max_points is not None and max_points < 2:
        raise ValueError(f"max_points must be >= 2, got {max_points}")
    params = request_params(run_ids, names, contexts, step_range)
    if smoothing is None and max_points is not None:
        out = _series_sql(cur, params, max_points)
        if out is not None:
            return out
    return _series_rows(cur, params, max_points, smoothing, exact=smoothing is None and max_points is not None)


def _series_rows(cur, params: dict, max_points: int | None, smoothing, *, exact: bool = False) -> pd.DataFrame:
    """:func:`series` on the fetched rows, bucketed in numpy (:func:`_pick`)."""
    lo, hi = params["lo"], params["hi"]
    zoomed = smoothing is not None and (lo is not None or hi is not None)
    # smoothing needs each series' whole history: then fetch it all once and keep the step range here
    full = fetch_rows(cur, {**params, "lo": None, "hi": None} if zoomed else params,
                      wall_time=max_points is None, exact=exact)
    rows, pos = full, None
    if zoomed:
        inside = np.ones(len(full.step), bool)
        if lo is not None:
            inside &= full.step >= lo
        if hi is not None:
            inside &= full.step <= hi
        rows, pos = subset(full, inside)
    if max_points is None:
        sel, grid = np.arange(len(rows.step)), None
    else:
        sel, grid = _pick(rows, max_points)
        sel = _dedupe(rows, sel)
    seg = np.repeat(np.arange(len(rows.keys)), np.diff(rows.starts)) if max_points is None else segment_of(rows, sel)
    out = _keyed_frame(rows.keys, seg, rows.step[sel], rows.value[sel],
                       None if rows.wall_time is None else rows.wall_time[sel])
    if smoothing is not None:
        out["smoothed"] = _smoothed(full, smoothing, sel if pos is None else pos[sel])
    if max_points is not None:
        out.attrs["grid"] = grid or {"start": None, "stop": None, "buckets": _buckets(max_points)}
    return out


def _col(t, name: str):
    """An Arrow column as float64 numpy (NULL -> NaN; steps stay exact below 2^53)."""
    return t.column(name).to_numpy().astype(np.float64)


def _series_sql(cur, params: dict, max_points: int) -> pd.DataFrame | None:
    """:func:`series` without smoothing from one bucket aggregate (module docstring); None: two keys
    share a hash in this request (the caller takes the exact path)."""
    nb = _buckets(max_points)
    s0, s1 = cur.execute(_RANGE, params).fetchall()[0]
    grid = {"start": s0, "stop": s1, "buckets": nb}
    if s0 is None:
        out = _keyed_frame([], [], [], [])
        out.attrs["grid"] = grid
        return out
    params = {**params, "lo": s0, "hi": s1}      # the grid's range: rows a refresh appends meanwhile stay out
    t = cur.sql(_BUCKETS, params={**params, "nb": nb, "s0": s0, "s1": s1}).to_arrow_table()
    if not all(t.column("one_key").to_pylist()):
        return None
    code, uniq = pd.factorize(t.column("h").to_numpy())                  # [B] series of each bucket row
    total = np.bincount(code, weights=t.column("n").to_numpy(), minlength=len(uniq))
    big = (total > max_points)[code]                                       # [B] bucket row of a long series
    picks = [(code[m], s[m], v[m]) for s, v in ((_col(t, "s_lo"), _col(t, "v_lo")), (_col(t, "s_hi"), _col(t, "v_hi")))
             for m in [big & ~np.isnan(s)]]
    if max_points >= 5:
        for s, v, sign in (("s_first", "v_first", 1), ("s_last", "v_last", -1), ("s_nan", None, 1)):
            s = _col(t, s)
            m = np.flatnonzero(big & ~np.isnan(s))
            o = m[np.lexsort((sign * s[m], code[m]))]
            o = o[np.concatenate([[True], code[o][1:] != code[o][:-1]])] if len(o) else o   # per series
            picks.append((code[o], s[o], _col(t, v)[o] if v else np.full(len(o), np.nan)))
    small = np.flatnonzero(total <= max_points)
    if len(small):
        raw = cur.sql(_RAW, params={**params, "hs": [int(h) for h in uniq[small]]}).to_arrow_table()
        by = np.argsort(uniq)
        picks.insert(0, (by[np.searchsorted(uniq, raw.column("h").to_numpy(), sorter=by)], _col(raw, "step"),
                         _col(raw, "value")))
    keys = _keys_of(cur, params, code, uniq, _col(t, "s_first"))
    if keys is None:
        return None
    code, step, value = (np.concatenate(x) for x in zip(*picks))
    rank = np.argsort(sorted(range(len(keys)), key=lambda i: key_order(keys[i])))[code]
    d = pd.DataFrame({"k": rank, "step": step.astype(np.int64), "value": value}).drop_duplicates()
    d = d.iloc[np.lexsort((d["step"].to_numpy(), d["k"].to_numpy()))]    # stable: ties keep the picks' order
    out = _keyed_frame(sorted(keys, key=key_order), d["k"].to_numpy(), d["step"].to_numpy(), d["value"].to_numpy())
    out.attrs["grid"] = grid
    return out


def _keys_of(cur, params: dict, code, uniq, s_first) -> list | None:
    """The key strings of each hash in ``uniq``, read at each series' first step; None on a collision."""
    first = np.full(len(uniq), np.inf)
    np.minimum.at(first, code, s_first)
    return keys_at(cur, params, first, uniq)


def _keyed_frame(keys: list, seg, step, value, wall_time=None) -> pd.DataFrame:
    """The frame of rows ``(keys[seg], step, value[, wall_time])``."""
    cols = KEYS + ["step", "value"] + (["wall_time"] if wall_time is not None else [])
    if not len(seg):
        return pd.DataFrame(columns=cols)
    out = pd.DataFrame(keys, columns=KEYS).take(seg).reset_index(drop=True)
    out["step"], out["value"] = step, value
    if wall_time is not None:
        out["wall_time"] = wall_time
    return out


def _buckets(max_points: int) -> int:
    return (max_points - 3) // 2 if max_points >= 5 else 1


def _firsts(pos, group):
    """The first of ``pos`` (ascending) in each run of equal ``group`` values."""
    if not len(pos):
        return pos
    return pos[np.concatenate([[True], group[1:] != group[:-1]])]


def _pick(r: Rows, max_points: int):
    """Positions (ascending) of the rows to return, and the request's grid (module docstring)."""
    n = len(r.step)
    if n == 0:
        return np.zeros(0, np.int64), None
    nb, s0, s1 = _buckets(max_points), int(r.step.min()), int(r.step.max())
    counts = np.diff(r.starts)
    big = counts > max_points
    keep = np.repeat(~big, counts)                          # [n] a series within budget: every row
    if big.any():
        bucket = (r.step - s0) * nb // (s1 - s0 + 1)        # [n] the grid bucket of each row
        new = np.ones(n, bool)
        new[1:] = bucket[1:] != bucket[:-1]
        new[r.starts[:-1]] = True                           # a (series, bucket) group starts here
        gid = np.cumsum(new) - 1                            # [n] group of each row
        first = np.flatnonzero(new)
        on = np.repeat(big, counts)
        for reduce in (np.fmin, np.fmax):                   # NaN ignored; an all-NaN bucket: NaN, no row
            ext = reduce.reduceat(r.value, first)
            hit = np.flatnonzero(on & (r.value == ext[gid]))
            keep[_firsts(hit, gid[hit])] = True
        if max_points >= 5:
            keep[r.starts[:-1][big]] = True                 # first and last point
            keep[r.starts[1:][big] - 1] = True
            nan = np.isnan(r.value) & on
            if r.null is not None:
                nan &= ~r.null                              # a missing (NULL) value is no divergence
            nan = np.flatnonzero(nan)
            keep[_firsts(nan, segment_of(r, nan))] = True  # first NaN
    return np.flatnonzero(keep), {"start": s0, "stop": s1, "buckets": nb}


def _dedupe(r: Rows, sel):
    """``sel`` without repeats of an equal (series, step, value) row (a step logged twice, identically)."""
    seg, step = segment_of(r, sel), r.step[sel]
    if not ((seg[1:] == seg[:-1]) & (step[1:] == step[:-1])).any():
        return sel
    return sel[~pd.DataFrame({"k": seg, "s": step, "v": r.value[sel]}).duplicated().to_numpy()]


def grid_bucket(steps, grid: Mapping[str, Any]):
    """The grid bucket of each step (the formula of :func:`_pick`), for callers and tests."""
    return ((pd.Series(steps, dtype="int64") - grid["start"]) * grid["buckets"]) // \
        (grid["stop"] - grid["start"] + 1)


def _smoothed(full: Rows, smoothing, pos):
    """The smoothing of each full series (one vectorised call per series) at positions ``pos`` of ``full``;
    a step logged twice reads the smoothing at its last row."""
    sm = np.empty(len(full.step))
    for k in range(len(full.keys)):
        a, b = full.starts[k], full.starts[k + 1]
        sm[a:b] = smoothing.apply(full.value[a:b])
    same = full.step[1:] == full.step[:-1]
    same[full.starts[1:-1] - 1] = False                      # series boundaries
    ends = np.flatnonzero(np.concatenate([~same, [True]]))   # last row of each (series, step)
    return sm[ends[np.searchsorted(ends, pos)]]


_BAND = """
WITH g AS (SELECT unnest($runs::VARCHAR[]) AS run_id, unnest($groups::VARCHAR[]) AS "group")
SELECT g."group", s.step, avg(s.value) AS mean, stddev_samp(s.value) AS std, min(s.value) AS lo,
       max(s.value) AS hi, count(*) AS n
FROM series s JOIN g USING (run_id) WHERE s.name = $name AND s.context = $context
  AND ($keys::BIGINT[] IS NULL OR list_contains($keys::BIGINT[], s.run_key))
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
    df = cur.execute(_BAND, {"runs": runs, "groups": grp, "name": name, "context": context,
                             "keys": run_keys(runs)}).df()
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
