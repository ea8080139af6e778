"""DuckDB's native memory per query (prints, never asserts): ``python bench/probe_duckdb_aggregate.py [--n 10000]``.

Found while locating the live-view soak's slow glibc growth (bench/RESULTS.md, "Live view soak: where the
server's memory goes"): a DuckDB connection keeps a little native memory for every hash-aggregate query it runs
(GROUP BY, DISTINCT), released only when the database is closed; a plain filter query keeps none. This runs
each kind ``--n`` times on one connection (after 1,000 warm-up runs), with DuckDB's default threads and with
one, then closes it, and prints glibc's bytes in use (mallinfo2) per query and after the close.
"""
from __future__ import annotations

import argparse
import gc
import sys
from pathlib import Path

import duckdb

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.traced_server import glibc_in_use_mb  # noqa: E402

QUERIES = {"plain filter": "SELECT name FROM t WHERE step < 3",
           "DISTINCT": "SELECT DISTINCT name FROM t WHERE step < 3",
           "GROUP BY": "SELECT name, count(*) FROM t WHERE step < 3 GROUP BY name"}


def probe(kind: str, sql: str, n: int, threads: int | None) -> None:
    con = duckdb.connect(":memory:")
    if threads:
        con.execute(f"SET threads = {threads}")
    con.execute("CREATE TABLE t AS SELECT (i % 81)::VARCHAR AS name, i // 81 AS step FROM range(100000) r(i)")
    for _ in range(1000):
        con.execute(sql).fetchall()
    before = glibc_in_use_mb()
    for _ in range(n):
        con.execute(sql).fetchall()
    after = glibc_in_use_mb()
    con.close()
    del con
    gc.collect()
    print(f"DuckDB {duckdb.__version__}, {kind:12s}, threads {threads or 'default'}: "
          f"{(after - before) * 1024 / n:+.2f} KB/query over {n:,} queries; in use {after:.1f} MB, "
          f"{glibc_in_use_mb():.1f} MB after close", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=10_000)
    n = ap.parse_args().n
    for kind, sql in QUERIES.items():
        for threads in (None, 1):
            probe(kind, sql, n, threads)


if __name__ == "__main__":
    main()
