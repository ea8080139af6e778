"""`streamlit run` with a memory tracer inside (a diagnostic for bench/soak_live.py --trace; prints, asserts nothing).

    SOAK_TRACE_OUT=trace.jsonl python bench/traced_server.py run app.py --server.headless=true ...

Starts tracemalloc (``SOAK_TRACE_FRAMES`` frames, default 1; 0: off), then Streamlit in this process. A daemon thread
writes one JSON line every ``SOAK_TRACE_EVERY_S`` seconds (default 60) with what the process's RSS is made of:

* ``rss_anon_mb`` / ``rss_file_mb``: RSS split into anonymous memory and mapped files;
* ``py_traced_mb``: memory Python objects hold (tracemalloc), ``tracemalloc_overhead_mb`` its own bookkeeping;
* ``pymalloc_*``: Python's small-object arenas (mmap'd, outside glibc) and the live blocks in them;
* ``glibc_*``: glibc malloc (``mallinfo2``, summed over its arenas): in use, and free but kept by the allocator;
* ``arrow_*``: pyarrow's memory pool (its own allocator; the ingest reads the JSONL files with pyarrow);
* ``duckdb_mb``: what DuckDB's buffer manager reports holding (``duckdb_memory()``, by tag in ``duckdb_tags``)
  for the server's RunStore connection, and the number of rows in its ``series`` table;
* ``top``: the ten source lines whose Python allocations grew most since the first line (tracemalloc diff).

The first line is written when ``<SOAK_TRACE_OUT>.start`` appears (the soak's "start" sample), so the diff
starts where the soak does.

``SOAK_TRACE_DUCKDB_SET`` (e.g. ``allocator_flush_threshold='8MB'``) is applied with SET on that connection once
it exists, to test an allocator setting without changing the product. ``SOAK_TRACE_TRIM=1`` makes every line
also record the RSS after glibc's ``malloc_trim(0)`` (which then changes what the next line measures);
``SOAK_TRACE_TRIM_AT_S=540`` does that once, on the first line at or after 540 s.
"""
from __future__ import annotations

import ctypes
import gc
import json
import os
import re
import sys
import tempfile
import threading
import time
import tracemalloc
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


class Mallinfo2(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
                                                "fsmblks", "uordblks", "fordblks", "keepcost")]


LIBC = ctypes.CDLL("libc.so.6")
LIBC.mallinfo2.restype = Mallinfo2
LIBC.fopen.restype, LIBC.fopen.argtypes = ctypes.c_void_p, [ctypes.c_char_p, ctypes.c_char_p]
LIBC.fclose.argtypes = [ctypes.c_void_p]
LIBC.malloc_info.argtypes = [ctypes.c_int, ctypes.c_void_p]


def glibc_in_use_mb() -> float:
    """glibc malloc's bytes in use (heap chunks and mmap'd ones), summed over its arenas (mallinfo2)."""
    mi = LIBC.mallinfo2()
    return (mi.uordblks + mi.hblkhd) / 2**20


def malloc_arenas() -> int:
    """How many arenas glibc's heap has (``<heap nr=...>`` entries of malloc_info)."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "malloc_info.xml"
        fp = LIBC.fopen(str(path).encode(), b"w")
        LIBC.malloc_info(0, fp)
        LIBC.fclose(fp)
        return path.read_text().count("<heap nr=")


def rss_mb(field: str = "VmRSS") -> float:
    return int(Path("/proc/self/status").read_text().split(f"{field}:")[1].split()[0]) / 1024


def pymalloc_side() -> dict:
    """Python's small-object allocator (obmalloc arenas of 1 MiB, mmap'd, outside glibc): the arenas it holds
    and the bytes of live blocks in them (``sys._debugmallocstats``, which writes to C stderr: captured)."""
    with tempfile.TemporaryFile() as f:
        sys.stderr.flush()
        saved = os.dup(2)
        os.dup2(f.fileno(), 2)
        try:
            sys._debugmallocstats()
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        f.seek(0)
        text = f.read().decode(errors="replace")
    arenas = re.search(r"(\d+) arenas \* (\d+) bytes/arena", text)
    blocks = re.search(r"# bytes in allocated blocks\s+=\s+([\d,]+)", text)
    return {"pymalloc_arenas_mb": int(arenas[1]) * int(arenas[2]) / 2**20 if arenas else None,
            "pymalloc_blocks_mb": int(blocks[1].replace(",", "")) / 2**20 if blocks else None}


def arrow_side() -> dict:
    """pyarrow's own memory pool (jemalloc or mimalloc, not glibc): the ingest reads JSONL with pyarrow."""
    pa = sys.modules.get("pyarrow")
    if pa is None:
        return {}
    pool = pa.default_memory_pool()
    return {"arrow_pool": pool.backend_name, "arrow_allocated_mb": pool.bytes_allocated() / 2**20,
            "arrow_max_mb": pool.max_memory() / 2**20}


def run_store():
    """The server's RunStore (held by the cached Services), found among the live objects; None before it opens."""
    mod = sys.modules.get("tracer_core.store.runstore")
    if mod is None:
        return None
    return next((o for o in gc.get_objects() if isinstance(o, mod.RunStore)), None)


def duckdb_side(store, applied: list) -> dict:
    if store is None:
        return {}
    with store._con.cursor() as cur:          # a diagnostic may read the private connection
        setting = os.environ.get("SOAK_TRACE_DUCKDB_SET")
        if setting and not applied:
            cur.execute(f"SET {setting}")
            applied.append(setting)
        tags = {t: b / 2**20 for t, b, _ in cur.execute("SELECT * FROM duckdb_memory()").fetchall() if b}
        rows = cur.execute("SELECT count(*) FROM series").fetchone()[0]
    return {"duckdb_mb": sum(tags.values()), "duckdb_tags": tags, "series_rows": rows, "duckdb_set": applied[:1]}


def line(first: tracemalloc.Snapshot | None, snap: tracemalloc.Snapshot | None, t0: float, applied: list) -> dict:
    mi = LIBC.mallinfo2()
    cur, peak = tracemalloc.get_traced_memory()
    row = {"t_s": round(time.monotonic() - t0, 1), "rss_mb": rss_mb(), "rss_anon_mb": rss_mb("RssAnon"),
           "rss_file_mb": rss_mb("RssFile"), "py_traced_mb": cur / 2**20,
           "py_traced_peak_mb": peak / 2**20, "tracemalloc_overhead_mb": tracemalloc.get_tracemalloc_memory() / 2**20,
           "glibc_in_use_mb": glibc_in_use_mb(), "glibc_free_kept_mb": mi.fordblks / 2**20,
           "glibc_arenas": malloc_arenas(),
           "threads": threading.active_count(), "gc_objects": len(gc.get_objects()), **pymalloc_side(), **arrow_side()}
    try:
        row.update(duckdb_side(run_store(), applied))
    except Exception as e:  # the store mid-refresh or closed: record it, keep tracing
        row["duckdb_error"] = f"{type(e).__name__}: {e}"
    if first is not None and snap is not None:
        stats = snap.compare_to(first, "lineno")[:10]
        row["top"] = [[str(s.traceback[0]), round(s.size_diff / 2**20, 2), s.count_diff] for s in stats]
    trim_at = float(os.environ.get("SOAK_TRACE_TRIM_AT_S", "inf"))
    if os.environ.get("SOAK_TRACE_TRIM") == "1" or row["t_s"] >= trim_at:
        LIBC.malloc_trim(0)
        row["rss_after_trim_mb"] = rss_mb()
        os.environ["SOAK_TRACE_TRIM_AT_S"] = "inf"      # once
    return row


def tracer(out: Path, every: float) -> None:
    """Wait for ``<out>.start`` (bench/soak_live.py touches it at its "start" sample), then trace every ``every`` s."""
    mark = out.with_name(out.name + ".start")
    while not mark.exists():
        time.sleep(0.5)
    t0, first, applied = time.monotonic(), None, []
    while True:
        snap = (tracemalloc.take_snapshot().filter_traces([tracemalloc.Filter(False, tracemalloc.__file__)])
                if tracemalloc.is_tracing() else None)
        row = line(first, snap, t0, applied)
        first = first or snap
        with out.open("a") as f:
            f.write(json.dumps(row) + "\n")
        time.sleep(max(0.0, t0 + every * (1 + int((time.monotonic() - t0) / every)) - time.monotonic()))


def main() -> None:
    frames = int(os.environ.get("SOAK_TRACE_FRAMES", "1"))
    if frames:                  # 0: no tracemalloc (it costs ~50 MB and time), the other figures only
        tracemalloc.start(frames)
    out = Path(os.environ.get("SOAK_TRACE_OUT", "trace.jsonl"))
    every = float(os.environ.get("SOAK_TRACE_EVERY_S", "60"))
    threading.Thread(target=tracer, args=(out, every), daemon=True, name="soak-tracer").start()
    sys.path.insert(0, str(ROOT))
    from streamlit.web import cli
    sys.argv = ["streamlit", *sys.argv[1:]]
    cli.main()


if __name__ == "__main__":
    main()
