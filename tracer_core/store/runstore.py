"""RunStore: the one owner of ``<data_dir>/store/tracer.duckdb``; indexes run folders and answers queries.

* **Cache, not source.** Every row comes from a run folder (written by :class:`~tracer_core.store.writer.RunWriter`
  in any process); the DuckDB file can be deleted at any time and is rebuilt from the folders. A file with
  another schema version, or one DuckDB cannot open, is rebuilt (with a message in :attr:`RunStore.notices`).
* **Incremental.** :meth:`refresh` reads only bytes appended since the last refresh (offsets are kept in the
  file, committed in the same transaction as the rows, so a crash never duplicates or loses a row).
* **Concurrency.** Training processes never open the DuckDB file, so there is no cross-process lock to fight.
  If another process (a second dashboard, a CLI command while the dashboard runs) already holds the file
  (DuckDB refuses even a read-only open then), this store uses an in-memory database *over Parquet*
  instead, and says so in ``notices``: finished runs are read in place from their compacted Parquet files
  (views, nothing loaded), only the other runs are ingested into memory (store/indexer.py).
  Inside the process: one connection, one ``cursor()`` per call (DuckDB 2.0 refuses a connection used by
  two threads at once); writes (refresh, edits) are serialised by a per-file lock, reads run freely.
* **Safety.** User-given names, tags and filters are bound as SQL parameters only; run ids are validated
  before they become paths.
"""
from __future__ import annotations

from tracer_core.lazy import lazy

import json
import logging
import os
import shutil
import threading
import time
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

duckdb = lazy("duckdb")
pd = lazy("pandas")

from . import bands, queries, runs_table, schema
from .export import export_tables
from .errors import StoreError  # noqa: F401  (defined there, raised and re-exported here)
from .indexer import Indexer
from .runfiles import (RunFolderError, effective_status, read_json, read_run_folder, run_dir_of, validate_run_id,
                       write_json_atomic)

log = logging.getLogger(__name__)
_LOCKS: dict[str, threading.RLock] = {}
_LOCKS_GUARD = threading.Lock()


def _file_lock(path: str) -> threading.RLock:
    # two RunStore objects on one file in one process share the DuckDB instance: serialise their writes
    with _LOCKS_GUARD:
        return _LOCKS.setdefault(path, threading.RLock())


class RunStore:
    def __init__(self, data_dir: str | os.PathLike | None = None, *, refresh_interval_s: float | None = 1.0,
                 in_memory: bool = False):
        """``refresh_interval_s``: queries first ingest new data when the last refresh is older than this
        (None: only explicit :meth:`refresh`). ``in_memory``: never touch the DuckDB file."""
        self.data_dir = schema.resolve_data_dir(data_dir)
        self.path = schema.store_path(self.data_dir)
        self.notices: list[str] = []      # what went wrong and what was done about it, for the UI
        self._noticed: set[str] = set()
        self.refresh_interval_s = refresh_interval_s
        self._lock = _file_lock(str(self.path))
        self._last_refresh = 0.0
        self.in_memory = in_memory
        self._con = self._connect()
        # a process that cannot own the DuckDB file reads compactions in place, and leaves writing them to
        # the owner (two writers of one compaction would race)
        self._indexer = Indexer(self.data_dir, notice_once=self._notice_once, db_errors=(duckdb.Error,),
                                write_compactions=not self.in_memory, over_parquet=self.in_memory)
        with self._lock:
            self._init_schema()
        self.refresh()

    # -- connection and schema ------------------------------------------------------------------------
    def _notice(self, msg: str) -> None:
        self.notices.append(msg)
        log.warning(msg)

    def _notice_once(self, key: str, msg: str) -> None:
        if key not in self._noticed:
            self._noticed.add(key)
            self._notice(msg)

    def _connect(self) -> duckdb.DuckDBPyConnection:
        if self.in_memory:
            return duckdb.connect(":memory:")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            return duckdb.connect(str(self.path))
        except duckdb.IOException as e:
            if "lock" in str(e).lower():
                self._notice(f"{self.path} is held by another process ({e}); this session indexes the run "
                             "folders in memory instead (same data; finished runs are read in place from "
                             "their compacted Parquet files, only the others are read from their folders).")
                self.in_memory = True
                return duckdb.connect(":memory:")
            reason = str(e)
        except duckdb.Error as e:
            reason = str(e)
        aside = self.path.with_name(f"{self.path.name}.unreadable-{int(time.time())}")
        self._notice(f"Could not open the store file {self.path} ({reason}). It is only a cache of the run "
                     f"folders: moved it to {aside.name} and rebuilding it from {self.data_dir / 'runs'}.")
        try:
            os.replace(self.path, aside)
            Path(f"{self.path}.wal").unlink(missing_ok=True)
            return duckdb.connect(str(self.path))
        except (OSError, duckdb.Error):
            self.in_memory = True
            return duckdb.connect(":memory:")

    def _cursor(self) -> duckdb.DuckDBPyConnection:
        return self._con.cursor()

    def _init_schema(self) -> None:
        with self._cursor() as cur:
            found = None
            if cur.execute("SELECT count(*) FROM information_schema.tables WHERE table_name = 'store_meta'"
                           ).fetchone()[0]:
                row = cur.execute("SELECT value FROM store_meta WHERE key = 'schema_version'").fetchone()
                found = row[0] if row else "unknown"
            if found is not None and found != str(schema.STORE_SCHEMA_VERSION):
                self._notice(f"The store file {self.path} has schema version {found}, this TRACER Studio uses "
                             f"{schema.STORE_SCHEMA_VERSION}. It is a cache: rebuilding it from the run folders.")
                self._drop_all(cur)
            for ddl in schema.all_ddl(over_parquet=self.in_memory):
                cur.execute(ddl)
            cur.execute("INSERT OR REPLACE INTO store_meta VALUES ('schema_version', ?)",
                        [str(schema.STORE_SCHEMA_VERSION)])
            self._indexer.load(cur)

    @staticmethod
    def _drop_all(cur) -> None:
        found = cur.execute("SELECT table_name, table_type FROM information_schema.tables "
                            "WHERE table_schema = 'main' ORDER BY table_type = 'VIEW' DESC").fetchall()
        for name, kind in found:    # views first: they read the tables; names from the catalog, not users
            cur.execute(f'DROP {"VIEW" if kind == "VIEW" else "TABLE"} IF EXISTS "{name}"')

    def rebuild(self) -> dict[str, int]:
        """Drop every table and the compactions, and re-index all run folders from their JSONL files.
        Over Parquet (another process holds the file) only this process's in-memory index is rebuilt: the
        compactions are the owner's (it reads its own tables, and would not rewrite them)."""
        with self._lock:
            with self._cursor() as cur:
                self._drop_all(cur)
            if self.in_memory:
                self._notice_once("rebuild", f"Rebuilt this process's in-memory index only: {self.path} and the "
                                  "compacted Parquet files belong to the process that holds the file; rebuild "
                                  "them (rebuild-store) when no other process has the store open.")
            else:
                shutil.rmtree(schema.compact_dir(self.data_dir), ignore_errors=True)
            self._init_schema()
            return self.refresh()

    def close(self) -> None:
        self._con.close()

    def __enter__(self) -> "RunStore":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- ingestion ------------------------------------------------------------------------------------
    def refresh(self, *, full: bool = False) -> dict[str, int]:
        """Index new runs, new rows of live runs and status changes; drop runs whose folder is gone.
        Finished (sealed) runs are not looked at unless ``full`` (store/indexer.py)."""
        with self._lock:
            with self._cursor() as cur:
                stats = self._indexer.refresh(cur, full)
            self._last_refresh = time.monotonic()
            return stats

    def _maybe_refresh(self) -> None:
        if self.refresh_interval_s is None or time.monotonic() - self._last_refresh < self.refresh_interval_s:
            return
        if self._lock.acquire(blocking=False):   # another thread is refreshing: use what is there
            try:
                self.refresh()
            finally:
                self._lock.release()

    # -- queries (see tracer_core.store.queries for the semantics) -----------------------------------------
    def _query(self, fn, *args, **kwargs):
        self._maybe_refresh()
        try:
            with self._cursor() as cur:
                return fn(cur, *args, **kwargs)
        except duckdb.IOException:
            if not self._recheck_parquet():
                raise
        with self._cursor() as cur:    # once more, over the compactions that are there now
            return fn(cur, *args, **kwargs)

    def _recheck_parquet(self) -> bool:
        """Over Parquet, a query failed to read a file: the owner deleted a run or rebuilt the compactions
        since the views were made. Re-check them (the runs concerned are re-added from what is there now)."""
        if not self._indexer.over_parquet:
            return False
        with self._lock:
            with self._cursor() as cur:
                changed = self._indexer.recheck_compacted(cur)
            if changed:
                self.refresh()
        return bool(changed)

    def list_runs(self, **filters: Any) -> pd.DataFrame:
        """Filters: run_ids, method, teacher, seed, tags (all of), status, name_contains, config={key: value}."""
        return self._query(queries.list_runs, **filters)

    def get_run(self, run_id: str) -> dict[str, Any] | None:
        df = self._query(queries.list_runs, run_ids=[run_id])
        return None if df.empty else df.iloc[0].to_dict()

    def resolve(self, ref: str) -> str:
        """A run id from an exact id, a unique id prefix or a unique name."""
        df = self._query(queries.list_runs)
        for hits in (df[df.run_id == ref], df[df.run_id.str.startswith(ref)], df[df.name == ref]):
            if len(hits) == 1:
                return hits.run_id.iloc[0]
            if len(hits) > 1:
                raise StoreError(f"{ref!r} matches {len(hits)} runs: {', '.join(hits.run_id[:5])}")
        raise StoreError(f"no run matches {ref!r}")

    def series(self, run_ids, names=None, contexts=None, *, max_points: int | None = 1000,
               step_range=None, smoothing=None) -> pd.DataFrame:
        """One step grid for the whole request; ``smoothing`` (metrics.smoothing.Smoothing) on full series."""
        return self._query(queries.series, run_ids, names, contexts, max_points=max_points, step_range=step_range,
                           smoothing=smoothing)

    def series_catalog(self, run_ids=None) -> pd.DataFrame:
        return self._query(queries.series_catalog, run_ids)

    def evaluations(self, run_ids, datasets=None, metrics=None) -> pd.DataFrame:
        return self._query(queries.evaluations, run_ids, datasets, metrics)

    def reliability(self, run_ids, step: int | None = None, datasets=None) -> pd.DataFrame:
        return self._query(queries.reliability, run_ids, step, datasets)

    def similarities(self, run_ids, step: int | None = None) -> pd.DataFrame:
        return self._query(queries.similarities, run_ids, step)

    def artifacts(self, run_ids) -> pd.DataFrame:
        return self._query(queries.artifacts, run_ids)

    def summaries(self, run_ids, names=None, contexts=None) -> pd.DataFrame:
        return self._query(queries.summaries, run_ids, names, contexts)

    def seed_groups(self, run_ids=None, seed_keys: Sequence[str] = queries.SEED_KEYS) -> pd.DataFrame:
        runs = self.list_runs(run_ids=run_ids) if run_ids is not None else self.list_runs()
        return queries.seed_groups(runs[runs.status != schema.INCOMPATIBLE], seed_keys)

    def seed_band(self, groups: Mapping[str, Sequence[str]], name: str, context: str = "", *,
                  max_points: int | None = 1000) -> pd.DataFrame:
        return self._query(queries.seed_band, groups, name, context, max_points=max_points)

    def band(self, groups: Mapping[str, Sequence[str]], name: str, context: str = "", **kwargs: Any) -> pd.DataFrame:
        """Seed bands on one interpolated grid (store/bands.py): center, spread, smoothing, max_points, step_range."""
        return self._query(bands.band, groups, name, context, **kwargs)

    def runs_page(self, **kwargs: Any) -> tuple[pd.DataFrame, int]:
        """One page of the Runs table and the filtered total (store/runs_table.py)."""
        return self._query(runs_table.runs_page, **kwargs)

    def runs_groups(self, **kwargs: Any) -> pd.DataFrame:
        """Group rows of the Runs table: n, mean, std of a metric per group (store/runs_table.py)."""
        return self._query(runs_table.runs_groups, **kwargs)

    def config_diff(self, run_ids: Sequence[str]) -> pd.DataFrame:
        runs = self.list_runs(run_ids=list(run_ids)).set_index("run_id")
        missing = [r for r in run_ids if r not in runs.index]
        if missing:
            raise StoreError(f"unknown run(s): {', '.join(missing)}")
        return queries.config_diff({r: json.loads(runs.at[r, "config"] or "{}") for r in run_ids})

    # -- edits (persisted in the run folder's meta.json, so a rebuild keeps them) -----------------------
    def _folder(self, run_id: str) -> Path:
        try:
            path = run_dir_of(run_id, self.data_dir)
        except RunFolderError as e:
            raise StoreError(str(e)) from None
        if not path.is_dir():
            raise StoreError(f"no run {run_id!r} in {path.parent}")
        return path

    def _edit_meta(self, run_id: str, **changes: Any) -> None:
        with self._lock:
            path = self._folder(run_id)
            meta = read_json(path / schema.META_FILE) or {}
            meta.update(changes, format_version=schema.RUN_FORMAT_VERSION)
            write_json_atomic(path / schema.META_FILE, meta)
            journal = schema.edits_journal(self.data_dir)
            journal.parent.mkdir(parents=True, exist_ok=True)
            with open(journal, "a", encoding="utf-8") as f:   # tell other processes
                f.write(json.dumps({"run_id": run_id, "at": time.time()}) + "\n")
            with self._cursor() as cur:
                self._indexer.upsert_run(cur, read_run_folder(path))

    def rename(self, run_id: str, name: str) -> None:
        name = str(name).strip()
        if not name:
            raise StoreError("a run name must not be empty")
        self._edit_meta(run_id, name=name)

    def set_tags(self, run_id: str, tags: Iterable[str]) -> None:
        clean = list(dict.fromkeys(str(t).strip() for t in tags if str(t).strip()))
        self._edit_meta(run_id, tags=clean)

    def add_tags(self, run_id: str, tags: Iterable[str]) -> None:
        self.set_tags(run_id, list(self._current_tags(run_id)) + list(tags))

    def remove_tags(self, run_id: str, tags: Iterable[str]) -> None:
        drop = {str(t).strip() for t in tags}
        self.set_tags(run_id, [t for t in self._current_tags(run_id) if t not in drop])

    def _current_tags(self, run_id: str) -> list[str]:
        rf = read_run_folder(self._folder(run_id))
        return list(rf.meta["tags"] if "tags" in rf.meta else rf.config.get("config", {}).get("tags", []))

    def delete(self, run_id: str, *, force: bool = False) -> None:
        """Remove the run folder and its rows. A live (queued/running) run is refused unless ``force``."""
        with self._lock:
            path = self._folder(run_id)
            state, _ = effective_status(read_run_folder(path).status)
            if state in schema.ACTIVE_STATUSES and not force:
                raise StoreError(f"run {run_id} is {state}; cancel it before deleting it")
            trash = path.with_name(f".deleting-{run_id}")
            shutil.rmtree(trash, ignore_errors=True)
            os.replace(path, trash)      # atomic: the run vanishes for every reader at once
            with self._cursor() as cur:
                self._indexer.forget(cur, run_id)
            shutil.rmtree(trash, ignore_errors=True)

    # -- export -----------------------------------------------------------------------------------------
    def export(self, run_ids: Sequence[str], fmt: str = "csv", out_dir: str | os.PathLike = ".") -> list[Path]:
        """Write runs, series, evaluations (and non-empty reliability/similarities/artifacts) for the runs."""
        if fmt not in ("csv", "parquet"):
            raise StoreError(f"export format must be csv or parquet, got {fmt!r}")
        try:
            run_ids = [validate_run_id(r) for r in run_ids]
        except RunFolderError as e:
            raise StoreError(str(e)) from None
        return self._query(export_tables, run_ids, fmt, Path(out_dir))
