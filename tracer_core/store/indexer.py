"""Incremental indexing of run folders into the store's tables (takes a DuckDB cursor; never imports duckdb).

A refresh costs what changed, not what exists:

* **Which runs exist**: one ``stat`` of ``<data_dir>/runs``; the folder is listed (``scandir``, no per-entry
  stat) only when its mtime moved (a run was created or deleted), or while that mtime is under 2 s old
  (coarse filesystem clocks could hide a second change in the same tick).
* **Sealed runs are skipped**: a run whose status.json holds a final status (done, failed, cancelled,
  interrupted) and whose files were read to the end is *sealed* (table ``sealed``): the writer never
  touches it again, so no refresh stats or opens any of its files. Name/tag edits made through any
  RunStore are announced in ``<data_dir>/store/edits.jsonl`` (one run id per line) and re-read from just
  those runs; ``refresh(full=True)`` re-checks every run (hand-edited folders).
* **Live and new runs** are read as before: small json files when their mtime changed (or while live, as
  liveness ages), JSONL files only when their size moved, from the last ingested byte offset.
* **Compaction**: a sealed run's rows are written to Parquet (:mod:`.compact`); a new run with a matching
  compaction (a deleted DuckDB file) is loaded from it in one bulk read per table.
* **Over Parquet** (``over_parquet``, a process that cannot own the DuckDB file): nothing is loaded from a
  compaction. Each row table is a view, ``<table>_live`` (rows of the runs that are not compacted: live,
  new, or finished before the owner compacted them) UNION ALL ``read_parquet`` of the compacted runs'
  files, read in place by every query. A run sealed here whose compaction appears later (the owner writes
  it when it seals the run) is swapped from memory to its Parquet, so memory holds only the live runs.
"""
from __future__ import annotations

from tracer_core.lazy import lazy

import functools
import json
import os
import re
import time
from pathlib import Path
from typing import Callable

pa = lazy("pyarrow")

from . import compact, schema
from .ingest import Truncated, read_new
from .runfiles import RunFolder, read_run_folder, runs_row

_RUN_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")   # as runfiles.list_run_dirs
_FRESH_S = 2.0
_ARROW = {"VARCHAR": lambda: pa.string(), "BIGINT": lambda: pa.int64(), "DOUBLE": lambda: pa.float64(),
          "TIMESTAMP": lambda: pa.timestamp("us"), "VARCHAR[]": lambda: pa.list_(pa.string())}
# the runs table's columns as Arrow types, read from its DDL: many runs are upserted in one statement
# (one single-row INSERT OR REPLACE per run costs ~10-20 ms on 2 shared cores: minutes at 1,000s of runs)


@functools.cache
def runs_arrow():
    """The runs table's Arrow schema (built on first use: pyarrow is not imported with the api)."""
    return pa.schema([(n, _ARROW[t.rstrip(",")]()) for n, t in
                      re.findall(r"(\w+) (VARCHAR\[\]|VARCHAR|BIGINT|DOUBLE|TIMESTAMP)", schema.RUNS_DDL)])
_OFFSETS_SQL = ("INSERT OR REPLACE INTO ingest_offsets SELECT unnest(?::VARCHAR[]), unnest(?::VARCHAR[]), "
                "unnest(?::BIGINT[])")


def _stat(p: Path):
    try:
        return os.stat(p)
    except FileNotFoundError:
        return None


class Indexer:
    """Ingestion state of one store connection (offsets, sealed runs, the runs folder listing)."""

    def __init__(self, data_dir: Path, *, notice_once: Callable[[str, str], None], db_errors: tuple,
                 write_compactions: bool, over_parquet: bool = False):
        self.data_dir = data_dir
        self.root = schema.runs_dir(data_dir)
        self.compact_root = schema.compact_dir(data_dir)
        self.journal = schema.edits_journal(data_dir)
        self.over_parquet = over_parquet
        self.views = compact.ParquetViews(self.root, self.compact_root) if over_parquet else None
        self._notice_once, self._db_errors, self._write_compactions = notice_once, db_errors, write_compactions
        self._stamps: dict[str, tuple] = {}
        self._listing: tuple[int, set[str]] | None = None
        self._pending: dict[str, RunFolder] = {}     # runs rows to upsert at the end of this refresh
        # the runs row last written per run: a live or queued run is re-read on every refresh, and rewriting an
        # unchanged row is a delete + insert that DuckDB holds in memory until its next checkpoint
        self._written: dict[str, list] = {}
        self._to_seal: list[str] = []

    def rows_table(self, spec: schema.TableSpec) -> str:
        """The physical table that holds a run's ingested rows (``<table>_live`` over Parquet)."""
        return schema.live_table(spec) if self.over_parquet else spec.table

    def load(self, cur) -> None:
        """Read the persisted state (after the schema exists)."""
        self._offsets = {(r, f): o for r, f, o in
                         cur.execute("SELECT run_id, file, byte_offset FROM ingest_offsets").fetchall()}
        self._sealed = {r[0] for r in cur.execute("SELECT run_id FROM sealed").fetchall()}
        self._known = {r[0] for r in cur.execute("SELECT run_id FROM runs").fetchall()}
        row = cur.execute("SELECT value FROM store_meta WHERE key = 'journal_offset'").fetchone()
        size = _stat(self.journal).st_size if _stat(self.journal) else 0
        # a store that starts empty has nothing to catch up on; a kept one resumes where it stopped
        self._journal_at = size if not self._known else min(int(row[0]) if row else 0, size)
        self._stamps.clear()
        self._written.clear()
        self._listing = None
        if self.views:
            self.views.reset(cur)

    # -- what exists --------------------------------------------------------------------------------------
    def _names(self, full: bool) -> set[str]:
        st = _stat(self.root)
        if st is None:
            return set()
        if not full and self._listing and self._listing[0] == st.st_mtime_ns and \
                time.time() - st.st_mtime > _FRESH_S:
            return self._listing[1]
        with os.scandir(self.root) as it:
            names = {e.name for e in it if _RUN_ID_RE.match(e.name) and e.is_dir()}
        self._listing = (st.st_mtime_ns, names)
        return names

    def _edited(self, cur) -> set[str]:
        st = _stat(self.journal)
        size = st.st_size if st else 0
        if size == self._journal_at:
            return set()
        if size < self._journal_at:         # journal replaced: re-read the meta of every sealed run
            self._journal_at = 0
        with open(self.journal, "rb") as f:
            f.seek(self._journal_at)
            data = f.read(size - self._journal_at)
        data = data[:data.rfind(b"\n") + 1]
        out = set()
        for line in data.splitlines():
            try:
                out.add(str(json.loads(line)["run_id"]))
            except (ValueError, KeyError, TypeError):
                continue
        self._journal_at += len(data)
        cur.execute("INSERT OR REPLACE INTO store_meta VALUES ('journal_offset', ?)", [str(self._journal_at)])
        return out

    # -- refresh --------------------------------------------------------------------------------------------
    def refresh(self, cur, full: bool = False) -> dict[str, int]:
        stats = {"runs": 0, "rows": 0, "bad_lines": 0}
        names = self._names(full)
        gone = sorted(self._known - names)
        for run_id in gone:
            self._forget(cur, run_id)
        if gone and self.views:
            self.views.create(cur)
        edited = self._edited(cur)
        self.upsert_runs(cur, [read_run_folder(self.root / r) for r in sorted(edited & self._sealed & names)])
        todo = sorted(names - self._sealed) if not full else sorted(names)
        if full:
            cur.execute("DELETE FROM sealed")
            self._sealed.clear()
        stats["rows"] += self._load_compacted(cur, [r for r in todo if r not in self._known])
        try:
            self._refresh_runs(cur, todo, stats)
        finally:
            self.upsert_runs(cur, list(self._pending.values()))
            self._pending.clear()
            if self._to_seal:
                cur.execute("INSERT OR REPLACE INTO sealed SELECT unnest(?::VARCHAR[])", [self._to_seal])
                self._sealed.update(self._to_seal)
                if self.views:
                    self.views.sealed_live.update(r for r in self._to_seal if r not in self.views.runs)
                self._to_seal = []
            if self.views:
                self.views.swap(cur, self.views.swap_ready(self._offsets, full))
        return stats

    def _refresh_runs(self, cur, todo: list[str], stats: dict[str, int]) -> None:
        for run_id in todo:
            if run_id in self._sealed:
                continue
            try:
                rows, bad = self._refresh_run(cur, self.root / run_id, run_id not in self._known)
            except Exception as e:   # one damaged run must not hide the others
                self._notice_once(run_id, f"run {run_id}: could not be indexed ({type(e).__name__}: {e})")
                continue
            self._known.add(run_id)
            stats["runs"] += 1
            stats["rows"] += rows
            stats["bad_lines"] += bad
            self._maybe_seal(cur, run_id)

    def _load_compacted(self, cur, new: list[str]) -> int:
        """Runs new to this store whose compaction still matches their folder: bulk-load, then seal."""
        found = {}
        for run_id in new:
            m = compact.usable(self.compact_root, run_id, self.root / run_id)
            rf = read_run_folder(self.root / run_id) if m else None
            if m and not rf.problem and rf.status.get("status") in schema.FINAL_STATUSES:
                found[run_id] = (m, rf)
        if not found:
            return 0
        manifests = {r: m for r, (m, _) in found.items()}
        cur.execute("BEGIN TRANSACTION")
        try:
            if self.views:       # read in place: the runs rows and their series appear together
                self.views.create(cur, {**self.views.runs, **manifests})
                self.views.load(cur, manifests)
                rows = sum(sum(m.get("tables", {}).values()) for m in manifests.values())
            else:
                rows = compact.load(cur, self.compact_root, manifests)
            self.upsert_runs(cur, [rf for _, rf in found.values()])
            offs = [(r, f, o) for r, (m, _) in found.items() for f, o in m["offsets"].items()]
            cur.execute(_OFFSETS_SQL, [list(c) for c in zip(*offs)] if offs else [[], [], []])
            cur.execute("INSERT OR REPLACE INTO sealed SELECT unnest(?::VARCHAR[])", [list(found)])
            cur.execute("COMMIT")
        except BaseException as e:
            cur.execute("ROLLBACK")
            self._notice_once("compact", f"could not load compacted runs ({type(e).__name__}: {e}); "
                                         "reading their run folders instead")
            return 0
        for run_id, (m, _) in found.items():
            self._offsets.update({(run_id, f): o for f, o in m["offsets"].items()})
            self._known.add(run_id)
            self._sealed.add(run_id)
        if self.views:
            self.views.runs.update(manifests)
        return rows

    def _maybe_seal(self, cur, run_id: str) -> None:
        prev = self._stamps.get(run_id)
        if prev is None or prev[2] or prev[1] not in schema.FINAL_STATUSES:
            return
        self._to_seal.append(run_id)
        self._stamps.pop(run_id, None)
        if self._write_compactions and not compact.usable(self.compact_root, run_id, self.root / run_id):
            offsets = {s.file: self._offsets.get((run_id, s.file), 0) for s in schema.TABLES}
            try:
                compact.write(cur, self.compact_root, run_id, offsets, compact.sizes_of(self.root / run_id))
            except (OSError, *self._db_errors) as e:   # the index is complete without it; only slower
                self._notice_once(f"compact-{run_id}", f"run {run_id}: could not write its compaction ({e})")

    def _refresh_run(self, cur, path: Path, new: bool) -> tuple[int, int]:
        # re-read the small json files when they changed, or while the run is live (liveness ages)
        mtimes = tuple(self._mtime(path / f) for f in (schema.CONFIG_FILE, schema.STATUS_FILE, schema.META_FILE))
        prev = self._stamps.get(path.name)
        if new or prev is None or prev[0] != mtimes or prev[1] in schema.ACTIVE_STATUSES:
            rf = self._pending[path.name] = read_run_folder(path)
            prev = self._stamps[path.name] = (mtimes, rf.status.get("status", ""), rf.problem)
        if prev[2]:     # unreadable folder: listed with its problem, no rows
            return 0, 0
        if self.views and path.name in self.views.runs and any(
                self._size(path / s.file) < self._offsets.get((path.name, s.file), 0) for s in schema.TABLES):
            self.views.drop(cur, path.name)       # a file was replaced: re-read the folder from byte 0
            cur.execute("DELETE FROM ingest_offsets WHERE run_id = ?", [path.name])
            self._offsets = {k: v for k, v in self._offsets.items() if k[0] != path.name}
        grown = [spec for spec in schema.TABLES
                 if self._size(path / spec.file) != self._offsets.get((path.name, spec.file), 0)]
        if not grown:
            return 0, 0
        rows = bad = 0
        cur.execute("BEGIN TRANSACTION")
        try:
            moved = {}
            for spec in grown:
                r, b, off = self._ingest_file(cur, path, spec)
                rows, bad = rows + r, bad + b
                if off != self._offsets.get((path.name, spec.file), 0):
                    moved[spec.file] = off
            if moved:   # committed with the rows: a crash never duplicates or loses one
                cur.execute(_OFFSETS_SQL, [[path.name] * len(moved), list(moved), list(moved.values())])
            cur.execute("COMMIT")
            self._offsets.update({(path.name, f): o for f, o in moved.items()})
        except BaseException:
            cur.execute("ROLLBACK")
            self._offsets = {(r, f): o for r, f, o in
                             cur.execute("SELECT run_id, file, byte_offset FROM ingest_offsets").fetchall()}
            raise
        return rows, bad

    @staticmethod
    def _mtime(p: Path) -> int:
        st = _stat(p)
        return st.st_mtime_ns if st else 0

    @staticmethod
    def _size(p: Path) -> int:
        st = _stat(p)
        return st.st_size if st else 0

    def _ingest_file(self, cur, path: Path, spec: schema.TableSpec) -> tuple[int, int, int]:
        """``(rows, bad lines, new offset)`` of one file, read from its last ingested offset."""
        run_id, key = path.name, (path.name, spec.file)
        offset, rows, bad = self._offsets.get(key, 0), 0, 0
        while True:
            try:
                table, new_offset, n_bad = read_new(path / spec.file, offset, spec)
            except Truncated:   # the file was replaced: forget what came from it and start over
                cur.execute(f"DELETE FROM {self.rows_table(spec)} WHERE run_id = ?", [run_id])
                offset = 0
                continue
            if new_offset == offset:
                break
            if table is not None and table.num_rows:
                rows += self._insert(cur, spec, run_id, table)
            bad, offset = bad + n_bad, new_offset
        return rows, bad, offset

    def _insert(self, cur, spec: schema.TableSpec, run_id: str, table: pa.Table) -> int:
        cols = ", ".join(f'"{c}"' for c, _ in spec.columns)            # from the schema, not from users
        need = " AND ".join(f'"{c}" IS NOT NULL' for c in spec.required)
        key, params = (", ?::BIGINT", [run_id, schema.run_key(run_id)]) if spec.keyed else ("", [run_id])
        cur.register("_ingest", table)
        try:
            n = cur.execute(f"INSERT INTO {self.rows_table(spec)} SELECT ?, {cols}{key} FROM _ingest WHERE {need}",
                            params).fetchone()[0]
        finally:
            cur.unregister("_ingest")
        return int(n)

    def upsert_runs(self, cur, rfs: list[RunFolder]) -> None:
        """Many runs rows in one statement (rows equal to the last ones written are skipped); a batch with a
        row DuckDB or Arrow refuses goes row by row."""
        rows = {}
        for rf in rfs:
            try:
                row = runs_row(rf)
            except (TypeError, ValueError, AttributeError) as e:   # malformed but parseable files
                rf.problem = f"unreadable run folder ({type(e).__name__}: {e})"
                row = runs_row(rf)
            if self._written.get(rf.run_id) != row:
                rows[rf.run_id] = row
        if not rows:
            return
        try:
            table = pa.Table.from_pylist([dict(zip(runs_arrow().names, r)) for r in rows.values()],
                                         schema=runs_arrow())
            cur.register("_runs_batch", table)
            try:
                cur.execute("INSERT OR REPLACE INTO runs SELECT * FROM _runs_batch")
            finally:
                cur.unregister("_runs_batch")
            self._written.update(rows)
        except (pa.ArrowException, *self._db_errors):
            for rf in rfs:
                self._written.pop(rf.run_id, None)
                self.upsert_run(cur, rf)
                if rf.problem and rf.run_id in self._stamps:
                    self._stamps[rf.run_id] = (*self._stamps[rf.run_id][:2], rf.problem)

    def upsert_run(self, cur, rf: RunFolder) -> None:
        try:
            row = runs_row(rf)
            cur.execute(f"INSERT OR REPLACE INTO runs VALUES ({', '.join('?' * len(row))})", row)
        except (*self._db_errors, TypeError, ValueError, AttributeError) as e:   # malformed but parseable files
            rf.problem = f"unreadable run folder ({type(e).__name__}: {e})"
            row = runs_row(rf)
            cur.execute(f"INSERT OR REPLACE INTO runs VALUES ({', '.join('?' * len(row))})", row)

    def forget(self, cur, run_id: str) -> None:
        """Drop a run's rows (its folder is gone); over Parquet its files leave the views at once."""
        self._forget(cur, run_id)
        if self.views:
            self.views.create(cur)

    def _forget(self, cur, run_id: str) -> None:
        for table in ["runs", "ingest_offsets", "sealed"] + [self.rows_table(t) for t in schema.TABLES]:
            cur.execute(f"DELETE FROM {table} WHERE run_id = ?", [run_id])
        self._stamps.pop(run_id, None)
        self._written.pop(run_id, None)
        self._known.discard(run_id)
        self._sealed.discard(run_id)
        self._offsets = {k: v for k, v in self._offsets.items() if k[0] != run_id}
        if self.views:
            self.views.runs.pop(run_id, None)
            self.views.sealed_live.discard(run_id)
        if self._write_compactions:
            compact.remove(self.compact_root, [run_id])

    def recheck_compacted(self, cur) -> int:
        """Over Parquet, after a query could not read a file (the owner deleted a run or rebuilt the
        compactions): forget the runs whose compaction no longer matches, so the next refresh re-adds them
        (from a new compaction or from their folder). Returns how many."""
        gone = self.views.stale() if self.views else []
        for run_id in gone:
            self._forget(cur, run_id)
        if gone:
            self.views.create(cur)
        return len(gone)
