"""Lab-scale store benchmark (prints, never asserts): ``python bench/bench_lab_store.py WORK_DIR [--runs 1000]
[--series 20] [--steps 10000] [--append-results]``.

Generates a synthetic lab store (bench/gen_lab_store.py, the run writer's format) and measures, with the
``uptime`` load next to every figure:

1. first ingest of every run folder (JSONL parse + Parquet compaction) and the size on disk;
2. rebuild after deleting the DuckDB file (from the compactions), and a second process's in-memory index;
3. a no-op refresh at that many runs (target <= 20 ms);
4. the Runs page's queries: one sorted/filtered page, group rows with mean/std/n, the full list (<= 1 s);
5. a 6-run comparison chart of 10k-step series with EMA smoothing (<= 300 ms);
6. 20 series x 100k points -> 1,000 each (<= 200 ms; issue 17's row);
7. the RSS of this process (the dashboard's store side).

Stores smaller than 10,000 steps get a separate 6 x 10k-step store for (5); (6) always uses its own 20 x 100k
run. WORK_DIR is reused when it already holds a generated store of that size (``.size`` file).
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import gen_lab_store as gen  # noqa: E402

from tracer_core.metrics.smoothing import Smoothing  # noqa: E402
from tracer_core.store import schema  # noqa: E402
from tracer_core.store.runstore import RunStore  # noqa: E402

ROWS: list[tuple[str, str, str]] = []


def load() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip().split("load average:")[-1].strip()


def record(what: str, result: str, target: str = "—") -> None:
    ROWS.append((what, f"{result} (load {load()})", target))
    print(f"{what}: {result}   [target {target}; load {load()}]", flush=True)


def timed(fn, n: int = 7) -> tuple[float, float, float]:
    """(median, min, max) seconds over ``n`` calls after one warm-up call."""
    fn()
    ts = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts), min(ts), max(ts)


def ms(t: tuple[float, float, float]) -> str:
    return f"median {t[0] * 1e3:.1f} ms ({t[1] * 1e3:.1f}–{t[2] * 1e3:.1f})"


def du(p: Path) -> int:
    return sum(f.stat().st_size for f in p.rglob("*") if f.is_file()) if p.exists() else 0


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def ensure(data_dir: Path, runs: int, series: int, steps: int) -> None:
    tag = data_dir / ".size"
    want = f"{runs}x{series}x{steps}"
    if tag.exists() and tag.read_text() == want:
        return
    shutil.rmtree(data_dir, ignore_errors=True)
    t0 = time.perf_counter()
    gen.generate(data_dir, runs, series, steps)
    tag.write_text(want)
    print(f"generated {want} in {time.perf_counter() - t0:.0f} s", flush=True)


def bench_lab(data_dir: Path, runs: int, series: int, steps: int) -> RunStore:
    shutil.rmtree(data_dir / "store", ignore_errors=True)
    t0 = time.perf_counter()
    store = RunStore(data_dir, refresh_interval_s=None)
    t_ingest = time.perf_counter() - t0
    pts = runs * series * steps
    record(f"first ingest of {runs} runs x {series} x {steps} = {pts / 1e6:.0f} M points (JSONL parse + compaction)",
           f"{t_ingest:.1f} s ({pts / t_ingest / 1e6:.2f} M points/s)")
    record("size on disk: run folders / DuckDB file / Parquet compactions",
           f"{du(data_dir / 'runs') / 2**30:.2f} / {schema.store_path(data_dir).stat().st_size / 2**30:.2f} / "
           f"{du(schema.compact_dir(data_dir)) / 2**30:.2f} GiB")
    store.close()
    schema.store_path(data_dir).unlink()
    Path(f"{schema.store_path(data_dir)}.wal").unlink(missing_ok=True)
    t0 = time.perf_counter()
    store = RunStore(data_dir, refresh_interval_s=None)
    record("rebuild after deleting the DuckDB file (from the compactions)", f"{time.perf_counter() - t0:.1f} s")
    before = rss_mb()
    t0 = time.perf_counter()
    second = RunStore(data_dir, refresh_interval_s=None, in_memory=True)
    record("second process's index (in memory, from the compactions)",
           f"{time.perf_counter() - t0:.1f} s, +{rss_mb() - before:.0f} MB RSS")
    second.close()
    record(f"no-op refresh at {runs} runs", ms(timed(store.refresh, 31)), "≤ 20 ms")
    record("Runs page: one page (50 rows, sorted by created, filtered by method)",
           ms(timed(lambda: store.runs_page(method="tracer", sort_by="created", limit=50, offset=100))), "≤ 1 s")
    record("Runs page: group rows (method x teacher x lr; mean, std, n of final accuracy)",
           ms(timed(lambda: store.runs_groups(by=["method", "teacher", "config.optim.lr"],
                                              eval_metric=("mnist", "accuracy")))), "≤ 1 s")
    record("Runs page: list_runs() of every run", ms(timed(lambda: store.list_runs(), 3)), "≤ 1 s")
    return store


def bench_chart(store: RunStore, ids: list[str]) -> None:
    name, ctx = gen.NAMES[0]
    for sm in (Smoothing("ema", 0.6), Smoothing("gaussian", 10)):
        record(f"6-run chart, 10k-step series, {sm.kind} smoothing on the full series, ≤ 1,000 points each",
               ms(timed(lambda: store.series(ids[:6], [name], [ctx], max_points=1000, smoothing=sm))), "≤ 300 ms")
    band = lambda: store.band({"g": ids[:6]}, name, ctx, spread="ci95", smoothing=Smoothing("ema", 0.6))  # noqa: E731
    record("6-run seed band (interpolated, 95 % CI, EMA on the full series)", ms(timed(band)), "—")


def bench_downsample(work: Path) -> None:
    d = work / "wide"
    ensure(d, 1, 20, 100_000)
    store = RunStore(d, refresh_interval_s=None)
    rid = store.list_runs().run_id.iloc[0]
    record("20 series x 100k points -> ≤ 1,000 each", ms(timed(lambda: store.series([rid], max_points=1000), 11)),
           "≤ 200 ms")
    record("same, with EMA smoothing on the full series",
           ms(timed(lambda: store.series([rid], max_points=1000, smoothing=Smoothing("ema", 0.9)), 5)), "—")
    store.close()


def main(argv=None) -> None:
    from bench.common import lab_store_parser
    ap = lab_store_parser(__doc__, "work_dir")
    ap.add_argument("--append-results", action="store_true", help="append the table to bench/RESULTS.md")
    a = ap.parse_args(argv)
    lab = a.work_dir / "lab"
    ensure(lab, a.runs, a.series, a.steps)
    store = bench_lab(lab, a.runs, a.series, a.steps)
    if a.steps >= 10_000:
        bench_chart(store, store.list_runs().run_id.tolist())
    else:
        ensure(a.work_dir / "chart", 6, a.series, 10_000)
        with RunStore(a.work_dir / "chart", refresh_interval_s=None) as chart:
            bench_chart(chart, chart.list_runs().run_id.tolist())
    store.close()
    bench_downsample(a.work_dir)
    record("RSS of this process at the end / peak", f"{rss_mb():.0f} MB / "
           f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")
    if a.append_results:
        lines = [f"\n## Lab-scale store (`bench/bench_lab_store.py --runs {a.runs} --series {a.series} --steps "
                 f"{a.steps}`, {os.cpu_count()}-core machine, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())})\n",
                 "| measure | result | target |", "|---|---|---|"] + [f"| {w} | {r} | {t} |" for w, r, t in ROWS]
        with open(Path(__file__).parent / "RESULTS.md", "a", encoding="utf-8") as f:
            f.write("\n".join(lines) + "\n")
    print(json.dumps(ROWS, indent=1))


if __name__ == "__main__":
    main()
