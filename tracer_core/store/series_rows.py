"""Filtered series rows as numpy columns grouped by series (takes a DuckDB cursor; never imports duckdb).

One scan returns the rows of a request as Arrow -> numpy columns ``(h, step, value)`` with ``h`` DuckDB's
64-bit hash of the series key ``(run_id, name, context)``: no key string crosses into Python (materialising
2 M key strings costs more than the whole downsampling query). A second, tiny query reads the key strings
of the rows at each series' first step only (zone maps skip the other row groups). Then ``pd.factorize(h)``
and a stable radix argsort by series (rows arrive in step order within a series: checked, else a lexsort).
Two keys of one request with one hash (odds ~K^2 / 2^65 for K series) are seen when both have a row at the
first step of their merged series; ``exact=True`` (a join on the key strings) is the slower path without
the hash. Used by :mod:`.downsample` (smoothing, full reads) and :mod:`.bands`.
"""
from __future__ import annotations

from tracer_core.lazy import lazy

from typing import Any, NamedTuple

from .schema import run_key

np = lazy("numpy")
pd = lazy("pandas")

KEYS = ["run_id", "name", "context"]

_FILTER = """
  SELECT run_id, name, context, step, value, wall_time FROM series
  WHERE list_contains($runs::VARCHAR[], run_id)
    AND ($keys::BIGINT[] IS NULL OR list_contains($keys::BIGINT[], run_key))
    AND ($names::VARCHAR[] IS NULL OR list_contains($names::VARCHAR[], name))
    AND ($contexts::VARCHAR[] IS NULL OR list_contains($contexts::VARCHAR[], context))
    AND ($lo::BIGINT IS NULL OR step >= $lo::BIGINT) AND ($hi::BIGINT IS NULL OR step <= $hi::BIGINT)
"""
_HASH = "hash(run_id, name, context)"
_ROWS = f"SELECT {_HASH} AS h, step, value{{wall}} FROM ({_FILTER})"
# the key strings of the rows at the given steps (each series' first one): zone maps skip most row groups. No
# DISTINCT: a step's few repeats are folded in Python, and a DuckDB connection keeps ~0.5 KB of native memory
# for every hash-aggregate query until it closes (bench/probe_duckdb_aggregate.py), which a Live page runs often
_KEYS_AT = f"""SELECT {_HASH} AS h, run_id, name, context FROM ({_FILTER})
  WHERE list_contains($at::BIGINT[], step)"""
_KEYS = f"SELECT DISTINCT run_id, name, context FROM ({_FILTER})"
_CODED = f"""SELECT k.i - 1 AS h, f.step, f.value{{wall}} FROM ({_FILTER}) f
JOIN (SELECT unnest($kr::VARCHAR[]) AS run_id, unnest($kn::VARCHAR[]) AS name, unnest($kc::VARCHAR[]) AS context,
             generate_subscripts($kr::VARCHAR[], 1) AS i) k
  ON f.run_id = k.run_id AND f.name = k.name AND f.context IS NOT DISTINCT FROM k.context"""


class Rows(NamedTuple):
    """Filtered rows grouped by series: series ``k`` (key ``keys[k]``, keys sorted) is rows
    ``starts[k]:starts[k + 1]``, in step order (a step logged twice: its rows in table order)."""
    keys: list                 # K (run_id, name, context) tuples
    starts: Any                # [K + 1] int64 row offsets
    step: Any                  # [n] int64
    value: Any                 # [n] float64 (a NULL value reads as NaN, flagged in ``null``)
    null: Any                  # [n] bool, or None when no value is NULL
    wall_time: Any = None      # [n] float64 when asked for


def as_list(x: Any) -> list | None:
    """None stays None (no filter); a scalar becomes a one-element list."""
    if x is None:
        return None
    if isinstance(x, (str, int, float)):
        return [x]
    return list(x)


def run_keys(runs: list) -> list[int] | None:
    """The runs' run_key (schema.run_key): a second, redundant run filter whose exact integer zone maps skip
    other runs' row groups; None (no such filter) when a run id has none."""
    keys = [run_key(str(r)) for r in runs]
    return None if None in keys else keys


def request_params(run_ids, names, contexts, step_range) -> dict[str, Any]:
    lo, hi = step_range if step_range is not None else (None, None)
    runs = as_list(run_ids) or []
    return {"runs": runs, "keys": run_keys(runs), "names": as_list(names), "contexts": as_list(contexts),
            "lo": lo, "hi": hi}


def key_order(k: tuple) -> tuple:
    return k[0], k[1], k[2] is None, k[2] or ""        # the SQL ORDER BY: NULL context last


def keys_at(cur, params: dict, steps, uniq) -> list | None:
    """The key strings (run_id, name, context) of each hash in ``uniq``, read from the rows at ``steps`` (a step
    where each of those series has a row); None when a hash has no key or more than one (a collision)."""
    found: dict[int, set] = {}
    at = np.unique(np.asarray(steps)).astype(np.int64).tolist()
    for h, *key in cur.execute(_KEYS_AT, {**params, "at": at}).fetchall():
        found.setdefault(h, set()).add(tuple(key))          # a step logged twice: its repeats fold here
    if any(len(found.get(int(h), ())) != 1 for h in uniq):
        return None
    return [next(iter(found[int(h)])) for h in uniq]


def fetch_rows(cur, params: dict, *, wall_time: bool = False, exact: bool = False) -> Rows:
    """Every row of the filter as numpy columns grouped by series (module docstring, "How")."""
    wall = ", wall_time" if wall_time else ""
    if exact:
        keys = sorted(cur.execute(_KEYS, params).fetchall(), key=key_order)
        t = cur.sql(_CODED.format(wall=wall), params={**params, "kr": [k[0] for k in keys],
                                                       "kn": [k[1] for k in keys], "kc": [k[2] for k in keys]})
        t = t.to_arrow_table()
        code = t.column("h").to_numpy().astype(np.int64)
    else:
        t = cur.sql(_ROWS.format(wall=wall), params=params).to_arrow_table()
        code, uniq = pd.factorize(t.column("h").to_numpy())          # codes in order of first appearance
        keys = []
        if len(uniq):
            first = np.flatnonzero(np.diff(np.maximum.accumulate(code), prepend=-1))   # first row of each code
            keys = keys_at(cur, params, t.column("step").to_numpy()[first], uniq)
            if keys is None:                                   # a hash collision, or rows deleted meanwhile
                return fetch_rows(cur, params, wall_time=wall_time, exact=True)
            rank = sorted(range(len(keys)), key=lambda i: key_order(keys[i]))
            keys = [keys[i] for i in rank]
            code = np.argsort(np.asarray(rank)).astype(np.int64)[code]   # first-appearance code -> sorted code
    return _grouped(keys, code, t, wall_time)


def _grouped(keys: list, code, t, wall_time: bool) -> Rows:
    """Sort the fetched rows by (series, step): a stable radix sort on the series code (O(n) for 16-bit
    codes), then a check that steps increase within each series (they do when logged in order), else lexsort."""
    step = t.column("step").to_numpy().astype(np.int64, copy=False)
    col = t.column("value")
    value = col.to_numpy().astype(np.float64, copy=False)
    null = col.is_null().to_numpy() if col.null_count else None
    small = code.astype(np.uint16) if len(keys) < 2**16 else code
    order = np.argsort(small, kind="stable")
    starts = np.searchsorted(code[order], np.arange(len(keys) + 1))
    s = step[order]
    down = np.flatnonzero(s[1:] < s[:-1]) + 1
    if len(down) and not np.isin(down, starts).all():
        order = np.lexsort((step, code))
        s = step[order]
    cols = [s, value[order], None if null is None else null[order],
            t.column("wall_time").to_numpy()[order] if wall_time else None]
    return Rows(keys, starts, *cols)


def segment_of(r: Rows, pos):
    return np.searchsorted(r.starts, pos, side="right") - 1


def subset(r: Rows, mask) -> tuple[Rows, Any]:
    """The rows where ``mask`` holds (series left with no row are dropped), and their positions in ``r``."""
    pos = np.flatnonzero(mask)
    counts = np.bincount(segment_of(r, pos), minlength=len(r.keys))
    present = np.flatnonzero(counts)
    starts = np.concatenate([[0], np.cumsum(counts[present])])
    pick = lambda a: None if a is None else a[pos]  # noqa: E731
    return Rows([r.keys[k] for k in present], starts, r.step[pos], r.value[pos], pick(r.null),
                pick(r.wall_time)), pos
