"""Read queries over the store's tables. Each function takes a DuckDB cursor (never imports duckdb).

Every user-given value (run ids, names, tags, filters) is bound as a parameter; the SQL text is constant.
"""
from __future__ import annotations

from tracer_core.lazy import lazy

import hashlib
import json
import math
from typing import Any, Mapping, Sequence

np = lazy("numpy")
pd = lazy("pandas")

from tracer_core.config import flatten
from tracer_core.metrics import summaries as summ

from .downsample import as_list, seed_band, series  # noqa: F401  (series/seed_band: re-exported)
from .schema import series_meta

SEED_KEYS = ("train.seed",)                  # what may differ inside a seed group ...
IGNORED_KEYS = ("name", "tags")              # ... besides these, which never define an experiment


# -- runs ----------------------------------------------------------------------------------------------

def runs_where(*, run_ids=None, method=None, teacher=None, seed=None, tags=None, status=None,
               name_contains: str | None = None) -> tuple[str, list]:
    """The WHERE clause (with bound parameters) of the runs filters; "" when there is none."""
    where, params = [], []
    for frag, value in (("list_contains(?::VARCHAR[], run_id)", as_list(run_ids)),
                        ("list_contains(?::VARCHAR[], method)", as_list(method)),
                        ("list_contains(?::VARCHAR[], teacher)", as_list(teacher)),
                        ("list_contains(?::BIGINT[], seed)", None if seed is None else [int(s) for s in as_list(seed)]),
                        ("list_has_all(tags, ?::VARCHAR[])", as_list(tags)),
                        ("list_contains(?::VARCHAR[], status)", as_list(status)),
                        ("contains(lower(name), lower(?))", name_contains or None)):
        if value is not None:
            where.append(frag)
            params.append(value)
    return (" WHERE " + " AND ".join(where) if where else ""), params


def with_progress(df: pd.DataFrame) -> pd.DataFrame:
    df["progress"] = (df["steps_done"] / df["total"].where(df["total"] > 0)).clip(0, 1)
    eta = (df["total"] - df["steps_done"]) / df["steps_per_s"].where(df["steps_per_s"] > 0)
    df["eta_s"] = eta.where(df["status"] == "running")
    return df


def list_runs(cur, *, config: Mapping[str, Any] | None = None, **filters: Any) -> pd.DataFrame:
    """Runs, newest first. Filters: run_ids, method, teacher, seed, tags (all of), status, name_contains;
    ``config``: dotted key -> wanted value."""
    where, params = runs_where(**filters)
    df = cur.execute("SELECT * FROM runs" + where + " ORDER BY run_id DESC", params).df()
    if config and len(df):
        df = df[[config_matches(json.loads(c or "{}"), config) for c in df["config"]]].reset_index(drop=True)
    return with_progress(df)


def get_dotted(cfg: Mapping[str, Any], key: str) -> Any:
    node: Any = cfg
    for part in key.split("."):
        if not isinstance(node, Mapping) or part not in node:
            raise KeyError(key)
        node = node[part]
    return node


def _parse(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def config_matches(cfg: Mapping[str, Any], filters: Mapping[str, Any]) -> bool:
    """Each dotted key equals its wanted value; string values from a form ("0.5", "true") compare typed."""
    for key, wanted in filters.items():
        try:
            actual = get_dotted(cfg, key)
        except KeyError:
            return False
        candidates = [wanted] + ([_parse(wanted)] if isinstance(wanted, str) else [])
        if isinstance(actual, list):
            candidates += [[t.strip() for t in w.split(",") if t.strip()] for w in candidates if isinstance(w, str)]
        if not any(_equal(actual, c) for c in candidates):
            return False
    return True


def _equal(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return math.isclose(a, b, rel_tol=1e-12, abs_tol=0.0)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_equal(x, y) for x, y in zip(a, b))
    return a == b


def config_diff(configs: Mapping[str, Mapping[str, Any]]) -> pd.DataFrame:
    """Rows: dotted keys whose values differ between the runs (missing counts as different); columns: runs."""
    flat = {rid: flatten(c) for rid, c in configs.items()}
    keys = sorted(set().union(*flat.values())) if flat else []
    rows = {}
    for k in keys:
        vals = [json.dumps(f.get(k, "<missing>"), sort_keys=True) for f in flat.values()]
        if len(set(vals)) > 1:
            rows[k] = [f.get(k) for f in flat.values()]
    return pd.DataFrame.from_dict(rows, orient="index", columns=list(flat)).rename_axis("key")


def seed_groups(runs: pd.DataFrame, seed_keys: Sequence[str] = SEED_KEYS) -> pd.DataFrame:
    """Group runs whose configs are equal except for ``seed_keys`` (and name/tags). One row per group."""
    rows = []
    for _, r in runs.iterrows():
        flat = flatten(json.loads(r["config"] or "{}"))
        key = {k: v for k, v in flat.items() if k not in seed_keys and k not in IGNORED_KEYS}
        gid = hashlib.sha1(json.dumps(key, sort_keys=True).encode()).hexdigest()[:10]
        rows.append({"group": gid, "run_id": r["run_id"], "name": r["name"], "seed": r["seed"],
                     "method": r["method"], "teacher": r["teacher"]})
    if not rows:
        return pd.DataFrame(columns=["group", "label", "method", "teacher", "n_runs", "run_ids", "seeds"])
    df = pd.DataFrame(rows).sort_values(["group", "seed", "run_id"])
    g = df.groupby("group", sort=False)
    out = g.agg(label=("name", "first"), method=("method", "first"), teacher=("teacher", "first"),
                n_runs=("run_id", "size"), run_ids=("run_id", list), seeds=("seed", list)).reset_index()
    return out.sort_values(["n_runs", "label"], ascending=[False, True]).reset_index(drop=True)


# -- summaries -----------------------------------------------------------------------------------------

def summaries(cur, run_ids, names=None, contexts=None) -> pd.DataFrame:
    """Per run and series: n, first, last, best (by the series' direction), min, max and the spec §5.2
    summaries (auc_normalized, early_slope, half_life_step), all on the raw, un-downsampled series."""
    df = series(cur, run_ids, names, contexts, max_points=None)
    rows = []
    for (rid, name, ctx), g in df.groupby(["run_id", "name", "context"], sort=True):
        s, v = g["step"].to_numpy(np.float64), g["value"].to_numpy(np.float64)
        hib = series_meta(name).higher_is_better
        finite = v[np.isfinite(v)]
        rows.append({"run_id": rid, "name": name, "context": ctx, "n": len(v),
                     "first": float(finite[0]) if len(finite) else None,
                     "last": summ.last_value(s, v),
                     "best": None if hib is None else summ.best_value(s, v, hib),
                     "min": float(finite.min()) if len(finite) else None,
                     "max": float(finite.max()) if len(finite) else None,
                     "auc_normalized": summ.auc_normalized(s, v), "early_slope": summ.early_slope(s, v),
                     "half_life_step": summ.half_life_step(s, v)})
    cols = ["run_id", "name", "context", "n", "first", "last", "best", "min", "max", "auc_normalized",
            "early_slope", "half_life_step"]
    return pd.DataFrame(rows, columns=cols)


def series_catalog(cur, run_ids=None) -> pd.DataFrame:
    """(name, context) pairs present, with run/point counts and the schema's metadata for each name."""
    df = cur.execute("""SELECT name, context, count(DISTINCT run_id) AS n_runs, count(*) AS n_points FROM series
                        WHERE $runs::VARCHAR[] IS NULL OR list_contains($runs::VARCHAR[], run_id)
                        GROUP BY ALL ORDER BY name, context""", {"runs": as_list(run_ids)}).df()
    metas = [series_meta(n) for n in df["name"]]
    for attr in ("label", "unit", "group", "higher_is_better", "log_scale", "lo", "hi"):
        df[attr] = [getattr(m, attr) for m in metas]
    return df


# -- evaluations and the small tables --------------------------------------------------------------------

def evaluations(cur, run_ids, datasets=None, metrics=None) -> pd.DataFrame:
    return cur.execute("""SELECT run_id, step, dataset, metric, value FROM evaluations
        WHERE list_contains($runs::VARCHAR[], run_id)
          AND ($ds::VARCHAR[] IS NULL OR list_contains($ds::VARCHAR[], dataset))
          AND ($m::VARCHAR[] IS NULL OR list_contains($m::VARCHAR[], metric))
        ORDER BY run_id, dataset, metric, step""",
                       {"runs": as_list(run_ids) or [], "ds": as_list(datasets), "m": as_list(metrics)}).df()


def reliability(cur, run_ids, step: int | None = None, datasets=None) -> pd.DataFrame:
    """Reliability-diagram bins; ``step=None``: each run's and dataset's latest evaluation."""
    return cur.execute("""SELECT * FROM reliability
        WHERE list_contains($runs::VARCHAR[], run_id)
          AND ($ds::VARCHAR[] IS NULL OR list_contains($ds::VARCHAR[], dataset))
          AND ($step::BIGINT IS NULL OR step = $step::BIGINT)
        QUALIFY $step::BIGINT IS NOT NULL OR step = max(step) OVER (PARTITION BY run_id, dataset)
        ORDER BY run_id, dataset, model, bin""",
                       {"runs": as_list(run_ids) or [], "ds": as_list(datasets), "step": step}).df()


def similarities(cur, run_ids, step: int | None = None) -> pd.DataFrame:
    return cur.execute("""SELECT * FROM similarities WHERE list_contains($runs::VARCHAR[], run_id)
          AND ($step::BIGINT IS NULL OR step = $step::BIGINT) ORDER BY run_id, step, tower, layer_index, pair, kind""",
                       {"runs": as_list(run_ids) or [], "step": step}).df()


def artifacts(cur, run_ids) -> pd.DataFrame:
    return cur.execute("SELECT * FROM artifacts WHERE list_contains(?::VARCHAR[], run_id) ORDER BY run_id, step",
                       [as_list(run_ids) or []]).df()
