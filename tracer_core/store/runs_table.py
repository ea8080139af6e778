"""The Runs table at thousands of runs: filter, sort and page in the store, and group rows (takes a cursor).

Sort and group columns are checked against fixed lists (``SORTABLE``, ``GROUPABLE``) or, for
``config.<dotted.key>``, against a key pattern; values are bound as parameters. A ``config={key: value}``
filter compares typed values in Python (:func:`queries.config_matches`) over the run ids the SQL filters
left, then the page itself is one ``ORDER BY ... LIMIT/OFFSET`` query.
"""
from __future__ import annotations

from tracer_core.lazy import lazy

import json
import re
from typing import Any, Mapping, Sequence

pd = lazy("pandas")

from .queries import config_matches, runs_where, with_progress

SORTABLE = ("run_id", "name", "preset", "method", "teacher", "seed", "status", "step", "steps_done", "total",
            "steps_per_s", "created", "started", "ended", "host", "device", "images_per_s", "skipped_images")
GROUPABLE = ("method", "teacher", "preset", "seed", "status", "host", "device")
_KEY_RE = re.compile(r"^config\.[A-Za-z0-9_]+(\.[A-Za-z0-9_]+)*$")


def _filtered(cur, config: Mapping[str, Any] | None, filters: Mapping[str, Any]) -> tuple[str, list]:
    where, params = runs_where(**filters)
    if not config:
        return where, params
    rows = cur.execute("SELECT run_id, config FROM runs" + where, params).fetchall()
    keep = [r for r, c in rows if config_matches(json.loads(c or "{}"), config)]
    return runs_where(**{**filters, "run_ids": keep})


def runs_page(cur, *, sort_by: str = "created", descending: bool = True, offset: int = 0, limit: int = 50,
              config: Mapping[str, Any] | None = None, **filters: Any) -> tuple[pd.DataFrame, int]:
    """``(rows of one page, number of runs matching the filters)``; filters as :func:`queries.list_runs`.
    Ties (and NULLs, last) are broken by run id, so pages never overlap."""
    if sort_by not in SORTABLE:
        raise ValueError(f"cannot sort runs by {sort_by!r}; one of {', '.join(SORTABLE)}")
    if int(limit) < 1 or int(offset) < 0:
        raise ValueError(f"limit must be >= 1 and offset >= 0, got limit={limit}, offset={offset}")
    where, params = _filtered(cur, config, filters)
    total = cur.execute("SELECT count(*) FROM runs" + where, params).fetchone()[0]
    order = "DESC" if descending else "ASC"
    df = cur.execute(f'SELECT * FROM runs{where} ORDER BY "{sort_by}" {order} NULLS LAST, run_id {order} '
                     "LIMIT ? OFFSET ?", params + [int(limit), int(offset)]).df()
    return with_progress(df), int(total)


def _group_expr(key: str) -> tuple[str, list]:
    if key in GROUPABLE:
        return f'"{key}"', []
    if _KEY_RE.match(key):
        return f'json_extract_string(config, ?) AS "{key}"', ["$." + key[len("config."):]]
    raise ValueError(f"cannot group runs by {key!r}; one of {', '.join(GROUPABLE)} or config.<dotted key>")


def runs_groups(cur, *, by: Sequence[str] = ("method", "teacher"), eval_metric: tuple[str, str] | None = None,
                series_metric: tuple[str, str] | None = None, config: Mapping[str, Any] | None = None,
                **filters: Any) -> pd.DataFrame:
    """One row per group: ``n_runs``, and over the runs with a value, ``n``, ``mean``, ``std`` (sample),
    ``min``, ``max`` of each run's *last* value of ``eval_metric=(dataset, metric)`` or
    ``series_metric=(name, context)``; ``run_ids`` lists the members. Largest groups first."""
    if (eval_metric is None) == (series_metric is None):
        raise ValueError("give exactly one of eval_metric=(dataset, metric) or series_metric=(name, context)")
    exprs, gparams = zip(*[_group_expr(k) for k in by]) if by else ((), ())
    table, cols = ("evaluations", ("dataset", "metric")) if eval_metric else ("series", ("name", "context"))
    mparams = list(eval_metric or series_metric)
    where, params = _filtered(cur, config, filters)
    select = ", ".join(exprs) + ", " if exprs else ""
    sql = (f"WITH m AS (SELECT run_id, arg_max(value, step) AS v FROM {table} WHERE {cols[0]} = ? AND {cols[1]} = ? "
           f"GROUP BY run_id) SELECT {select}count(*) AS n_runs, count(m.v) AS n, avg(m.v) AS mean, "
           "stddev_samp(m.v) AS std, min(m.v) AS min, max(m.v) AS max, list(run_id ORDER BY run_id) AS run_ids "
           f"FROM runs LEFT JOIN m USING (run_id){where} " + ("GROUP BY ALL " if exprs else "") +
           "ORDER BY n_runs DESC" + (", " + ", ".join(str(i + 1) for i in range(len(exprs))) if exprs else ""))
    return cur.execute(sql, mparams + [p for ps in gparams for p in ps] + params).df()
