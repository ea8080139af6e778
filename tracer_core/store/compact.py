"""Compaction of finished runs into Parquet (takes a DuckDB cursor; never imports duckdb).

A run in a final status never changes again, so once the store has read its files to the end it writes
``<data_dir>/store/compact/<run_id>/<table>.parquet`` (one file per non-empty table, zstd) and a
``manifest.json`` naming the store schema and the byte size and ingested offset of each JSONL file.

Like the DuckDB file this is a cache: the run folder stays the source of truth. A compaction is used
(instead of parsing the JSONL again) only while its manifest matches the store schema and the current
size of every JSONL file, so an edited or replaced file is re-read from the folder. Rebuilding the DuckDB
index from these files is a bulk Parquet read (one ``INSERT ... FROM read_parquet([...])`` per table for
all the runs), and a second dashboard process that cannot open the DuckDB file loads them instead of
re-parsing every run's JSONL.
"""
from __future__ import annotations

import os
import shutil
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
        n = cur.execute(f"COPY (SELECT * FROM {spec.table} WHERE run_id = {_sql_str(run_id)}) TO {_sql_str(out)} "
                        "(FORMAT parquet, COMPRESSION zstd)").fetchone()[0]
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
            cols = ", ".join(["run_id"] + [f'"{c}"' for c, _ in spec.columns])   # from the schema
            cur.execute(f"INSERT INTO {spec.table} SELECT {cols} FROM read_parquet(?::VARCHAR[])", [files])
            rows += sum(m["tables"][spec.table] for m in manifests.values() if spec.table in m.get("tables", {}))
    return rows


def remove(root: Path, run_ids: Iterable[str]) -> None:
    for rid in run_ids:
        shutil.rmtree(root / rid, ignore_errors=True)
