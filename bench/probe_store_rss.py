"""Store-side memory during a live view (prints, never asserts): ``python bench/probe_store_rss.py [--minutes 4]``.

Does the RSS of a process holding a RunStore grow with its refreshes or with the rows logged? A real RunWriter
appends rows like the demo (81 series per step, ~2 steps/s) for ``--minutes`` while a RunStore refreshes and
runs the Live page's kind of queries (list_runs, 8 smoothed series at <= 600 points) every 2 s; then as long
again with no new rows and the same queries. RSS (VmRSS) is printed every 30 s, beside glibc's and DuckDB's
figures. ``--rounds N [--steps S]``: S steps logged once, then N refreshes back to back with no new rows.
``--append S``: S steps logged as fast as they go, DuckDB's memory by tag and its WAL size along the way.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tracer_core.config import RunConfig  # noqa: E402
from tracer_core.metrics.smoothing import Smoothing  # noqa: E402
from tracer_core.store.runstore import RunStore  # noqa: E402
from tracer_core.store.writer import RunWriter  # noqa: E402
from bench.traced_server import LIBC, glibc_in_use_mb, rss_mb  # noqa: E402

NAMES = [(f"stat_{i}", c) for i in range(27) for c in ("img", "text", "combined")]


def parts(store: RunStore) -> str:
    """RSS beside glibc's in-use / free-kept bytes and DuckDB's buffer memory (see bench/traced_server.py)."""
    mi = LIBC.mallinfo2()
    with store._con.cursor() as cur:    # closed: an unconsumed result on the store's connection would keep a
        #                                 transaction open, and DuckDB never checkpoints while one is
        duck = cur.execute("SELECT sum(memory_usage_bytes) FROM duckdb_memory()").fetchone()[0]
    return (f"rss {rss_mb():.1f} MB, glibc in use {glibc_in_use_mb():.1f}, free kept "
            f"{mi.fordblks / 2**20:.1f}, duckdb {duck / 2**20:.1f}")


def queries(store: RunStore, run_id: str) -> None:
    """What one Live-page refresh asks of the store: a refresh, the runs list, 8 smoothed series."""
    store.refresh()
    store.list_runs()
    for name, ctx in NAMES[:24:3]:
        store.series([run_id], [name], [ctx], max_points=600, smoothing=Smoothing("ema", 0.6))


def rounds(n: int, steps: int) -> None:
    """``--rounds N``: log ``steps`` steps once, then N Live-page refreshes back to back (no new rows, no
    sleep): memory that grows here grows with refreshes, not with rows."""
    data = tempfile.mkdtemp(prefix="probe-rss-")
    writer = RunWriter.create(RunConfig(), data, flush_s=0.5)
    writer.on_start(SimpleNamespace(total_steps=10**6, device="cpu"))
    rng = np.random.default_rng(0)
    for step in range(1, steps + 1):
        writer.on_step(step, {k: float(rng.normal()) for k in NAMES})
    writer.flush()
    store = RunStore(data, refresh_interval_s=None)
    for i in range(n + 1):
        if i % max(1, n // 10) == 0:
            print(f"round {i}: {parts(store)}", flush=True)
        queries(store, writer.run_id)
    store.close()
    writer.close("done")


def appends(steps: int, every: int) -> None:
    """``--append S``: log S steps, refreshing the store after every 10 (as a live view does), and print
    DuckDB's memory by tag and the WAL size every ``every`` steps: appended rows are held uncompressed in
    memory (IN_MEMORY_TABLE) until the WAL reaches DuckDB's checkpoint_threshold, then written compressed."""
    data = tempfile.mkdtemp(prefix="probe-rss-")
    writer = RunWriter.create(RunConfig(), data, flush_s=60)
    writer.on_start(SimpleNamespace(total_steps=10**6, device="cpu"))
    store, rng = RunStore(data, refresh_interval_s=None), np.random.default_rng(0)
    wal = Path(f"{store.path}.wal")
    for step in range(1, steps + 1):
        writer.on_step(step, {k: float(rng.normal()) for k in NAMES})
        if step % 10 == 0:
            writer.flush()
            store.refresh()
        if step % every == 0:
            with store._con.cursor() as cur:
                tags = {t: round(b / 2**20, 1) for t, b, _ in cur.execute("SELECT * FROM duckdb_memory()")
                        .fetchall() if b}
            size = wal.stat().st_size / 2**20 if wal.exists() else 0.0
            print(f"step {step} ({step * len(NAMES):,} rows): WAL {size:.1f} MB, DuckDB {tags}; {parts(store)}",
                  flush=True)
    store.close()
    writer.close("done")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--minutes", type=float, default=4.0, help="length of each phase (writing, then idle)")
    ap.add_argument("--rounds", type=int, default=0, help="instead: this many back-to-back refreshes, no writes")
    ap.add_argument("--steps", type=int, default=1000, help="with --rounds: steps logged before them")
    ap.add_argument("--append", type=int, default=0, help="instead: log this many steps, DuckDB memory by tag")
    a = ap.parse_args()
    if a.rounds:
        return rounds(a.rounds, a.steps)
    if a.append:
        return appends(a.append, max(10, a.append // 20))
    phase = a.minutes * 60
    data = tempfile.mkdtemp(prefix="probe-rss-")
    writer = RunWriter.create(RunConfig(), data, flush_s=0.5)
    writer.on_start(SimpleNamespace(total_steps=10**6, device="cpu"))
    store = RunStore(data, refresh_interval_s=None)
    rng, step, t0, last = np.random.default_rng(0), 0, time.time(), -30.0
    print(f"t=0 rss {rss_mb():.0f} MB")
    while time.time() - t0 < 2 * phase:
        writing = time.time() - t0 < phase
        if writing:
            for _ in range(4):
                step += 1
                writer.on_step(step, {k: float(rng.normal()) for k in NAMES})
            writer.flush()
        queries(store, writer.run_id)
        time.sleep(2)
        if time.time() - last >= 30:
            last = time.time()
            print(f"t={last - t0:.0f} s {'writing' if writing else 'idle   '} step {step} {parts(store)}",
                  flush=True)
    store.close()
    writer.close("done")


if __name__ == "__main__":
    main()
