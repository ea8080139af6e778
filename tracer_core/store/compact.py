"""Compaction of finished runs into Parquet (takes a DuckDB cursor; never imports duckdb).

A run in a final status never changes again, so once the store has read its files to the end it writes
``<data_dir>/store/compact/<run_id>/<table>.parquet`` (one file per non-empty table, zstd) and a
``manifest.json`` naming the store schema and the byte size and ingested offset of each JSONL file.

Like the DuckDB file this is a cache: the run folder stays the source of truth. A compaction is used
(instead of parsing the JSONL again) only while its manifest matches the store schema and the current
size of every JSONL file, so an edited or replaced file is re-read from the folder. Rebuilding the DuckDB
index from these files is a bulk Parquet read (one ``INSERT ... FROM read_parquet([...])`` per table for
all the runs). A second dashboard process that cannot open the DuckDB file loads nothing from them: its
row tables are views that read these files in place (:func:`view_sql`), so it starts in about the time it
takes to read the runs' small json files, and its memory holds only the runs that are not compacted.
"""
from __future__ import annotations

import os
import shutil
import time
from pathlib import Path
from typing import Iterable, Mapping

from . import schema
from .runfiles import RunFolderError, read_json, write_json_atomic

MANIFEST = "manifest.json"


def _sql_str(p: Path | str) -> str:
    return "'" + str(p).replace("'", "''") + "'"     # a path we built (validated run id), quoted as a literal


def sizes_of(run_dir: Path) -> dict[str, int]:
    out = {}
    for spec in schema.TABLES:
        try:
            out[spec.file] = (run_dir / spec.file).stat().st_size
        except FileNotFoundError:
            out[spec.file] = 0
    return out


def write(cur, root: Path, run_id: str, offsets: Mapping[str, int], sizes: Mapping[str, int]) -> None:
    """Write the run's rows (as the store holds them) to Parquet, atomically (temp folder + rename)."""
    tmp = root / f".tmp-{run_id}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    tables = {}
    for spec in schema.TABLES:
        if not offsets.get(spec.file):      # nothing ingested from this file: no rows, no query
            continue
        out = tmp / f"{spec.table}.parquet"
        # Series rows sorted by (name, context, step): a chart reads one or two names of a run, and a rebuild or
        # a second process over these files then skips the other names' row groups by their min/max statistics
        # (the writer's order is step-major: every row group holds every name). Step order within a series holds.
        order = " ORDER BY name, context, step" if spec.table == "series" else ""
        n = cur.execute(f"COPY (SELECT * FROM {spec.table} WHERE run_id = {_sql_str(run_id)}{order}) TO "
                        f"{_sql_str(out)} (FORMAT parquet, COMPRESSION zstd)").fetchone()[0]
        if n:
            tables[spec.table] = int(n)
        else:
            out.unlink(missing_ok=True)
    write_json_atomic(tmp / MANIFEST, {"store_schema": schema.STORE_SCHEMA_VERSION, "run_id": run_id,
                                       "sizes": dict(sizes), "offsets": dict(offsets), "tables": tables})
    final = root / run_id
    shutil.rmtree(final, ignore_errors=True)
    os.replace(tmp, final)


def usable(root: Path, run_id: str, run_dir: Path) -> dict | None:
    """The manifest of a compaction that still matches the run folder, else None."""
    try:
        m = read_json(root / run_id / MANIFEST)
    except (RunFolderError, OSError):
        return None
    if not m or m.get("store_schema") != schema.STORE_SCHEMA_VERSION or m.get("sizes") != sizes_of(run_dir):
        return None
    if any(not (root / run_id / f"{t}.parquet").is_file() for t in m.get("tables", {})):
        return None
    return m


def load(cur, root: Path, manifests: Mapping[str, dict]) -> int:
    """Insert the compacted rows of these runs (one bulk read per table); returns the number of rows."""
    rows = 0
    for spec in schema.TABLES:
        files = [str(root / rid / f"{spec.table}.parquet") for rid, m in manifests.items()
                 if spec.table in m.get("tables", {})]
        if files:
            cols = ", ".join(schema.row_columns(spec))                         # from the schema
            cur.execute(f"INSERT INTO {spec.table} SELECT {cols} FROM read_parquet(?::VARCHAR[])", [files])
            rows += sum(m["tables"][spec.table] for m in manifests.values() if spec.table in m.get("tables", {}))
    return rows


def view_sql(spec: schema.TableSpec, root: Path, run_ids: list[str]) -> str:
    """``CREATE OR REPLACE VIEW <table>``: the rows of ``<table>_live`` UNION ALL these runs' Parquet files,
    with the table's columns in the table's order.

    ``run_id`` is taken from the file's path (``compact/<run_id>/<table>.parquet``), not from its column:
    DuckDB then evaluates a query's run filter (``list_contains($runs, run_id)``) on the path list and opens
    only the matching files (a 6-run chart over 1,000 compacted runs opens 6 files, ~20 ms, instead of
    every file's footer, ~100-200 ms). Paths are built from validated run ids and quoted as literals; no hive
    partitioning (a data dir such as ``/data/exp=1`` must not add columns).
    """
    cols = ", ".join(schema.row_columns(spec)[1:])               # from the schema, not from users
    sql = f"CREATE OR REPLACE VIEW {spec.table} AS SELECT run_id, {cols} FROM {schema.live_table(spec)}"
    if run_ids:
        files = ", ".join(_sql_str((root / rid / f"{spec.table}.parquet").as_posix()) for rid in run_ids)
        sql += (f" UNION ALL SELECT split_part(filename, '/', -2) AS run_id, {cols} "
                f"FROM read_parquet([{files}], filename = true, hive_partitioning = false)")
    return sql


def remove(root: Path, run_ids: Iterable[str]) -> None:
    for rid in run_ids:
        shutil.rmtree(root / rid, ignore_errors=True)


class ParquetViews:
    """Over Parquet (a process that cannot own the DuckDB file): which runs are read in place, the views
    over them, and the swap of sealed in-memory runs to their compaction once the owner has written it."""
    SWAP_EVERY_S = 5.0      # sealed in-memory runs are checked for a compaction this often (or on a full refresh)
    # small tables (rows grow with evaluations, not steps) that whole-store queries read on every Runs page
    # render (group rows of a final metric): loaded into memory once (~0.7 s at 1,000 runs), because a
    # view would read every run's file per query (~0.3-0.7 s at 1,000 runs on 2 busy cores)
    LOADED = ("evaluations",)

    def __init__(self, runs_root: Path, root: Path):
        self.runs_root, self.root = runs_root, root
        self.runs: dict[str, dict] = {}        # run id -> manifest of the runs read in place
        self.sealed_live: set[str] = set()     # sealed runs whose rows are still in the live tables
        self._swap_at = 0.0

    def reset(self, cur) -> None:
        self.runs, self.sealed_live = {}, set()
        self.create(cur)

    def create(self, cur, runs: Mapping[str, dict] | None = None) -> None:
        runs = self.runs if runs is None else runs
        for spec in schema.TABLES:
            cur.execute(view_sql(spec, self.root, [] if spec.table in self.LOADED else
                                 [r for r, m in sorted(runs.items()) if spec.table in m.get("tables", {})]))

    def load(self, cur, manifests: Mapping[str, dict]) -> None:
        """Copy the ``LOADED`` tables of these newly read-in-place runs into memory."""
        for spec in schema.TABLES:
            files = [str(self.root / r / f"{spec.table}.parquet") for r, m in manifests.items()
                     if spec.table in m.get("tables", {})]
            if spec.table in self.LOADED and files:
                cols = ", ".join(schema.row_columns(spec))                     # from the schema
                cur.execute(f"INSERT INTO {schema.live_table(spec)} SELECT {cols} FROM read_parquet(?::VARCHAR[])",
                            [files])

    def drop(self, cur, run_id: str) -> None:
        """Stop reading a run from its compaction (its rows are re-read from its folder)."""
        self.runs.pop(run_id, None)
        for table in self.LOADED:
            cur.execute(f"DELETE FROM {schema.live_table(schema.TABLE_BY_NAME[table])} WHERE run_id = ?", [run_id])
        self.create(cur)

    def swap_ready(self, offsets: Mapping[tuple[str, str], int], force: bool) -> dict[str, dict]:
        """Sealed in-memory runs whose compaction now holds exactly the rows read here (same offsets)."""
        if not self.sealed_live or (not force and time.monotonic() - self._swap_at < self.SWAP_EVERY_S):
            return {}
        self._swap_at = time.monotonic()
        ready = {}
        for run_id in sorted(self.sealed_live):
            m = usable(self.root, run_id, self.runs_root / run_id)
            if m and m.get("offsets") == {s.file: offsets.get((run_id, s.file), 0) for s in schema.TABLES}:
                ready[run_id] = m
        return ready

    def swap(self, cur, ready: Mapping[str, dict]) -> None:
        """Delete these runs' in-memory rows and add their files to the views in one transaction (a
        concurrent query sees each row once, from one side)."""
        if not ready:
            return
        cur.execute("BEGIN TRANSACTION")
        try:
            for spec in schema.TABLES:
                if spec.table not in self.LOADED:    # those stay in memory: they are the same rows
                    cur.execute(f"DELETE FROM {schema.live_table(spec)} WHERE list_contains(?::VARCHAR[], run_id)",
                                [list(ready)])
            self.create(cur, {**self.runs, **ready})
            cur.execute("COMMIT")
        except BaseException:
            cur.execute("ROLLBACK")
            raise
        self.runs.update(ready)
        self.sealed_live -= set(ready)

    def stale(self) -> list[str]:
        """Runs read in place whose compaction is gone or no longer matches their folder."""
        return [r for r in sorted(self.runs) if not usable(self.root, r, self.runs_root / r)]
