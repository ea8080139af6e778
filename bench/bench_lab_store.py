"""Lab-scale store benchmark (prints, never asserts): ``python bench/bench_lab_store.py WORK_DIR [--runs 1000]
[--series 20] [--steps 10000] [--append-results]``.

Generates a synthetic lab store (bench/gen_lab_store.py, the run writer's format) and measures, with the
``uptime`` load next to every figure:

1. first ingest of every run folder (JSONL parse + Parquet compaction) and the size on disk;
2. rebuild after deleting the DuckDB file (from the compactions), and a real second process started while
   this one holds the file: its start time, RSS and a 6-run chart (``--compare-with OTHER_CHECKOUT`` runs
   the same second process with another checkout's code too, interleaved, e.g. before/after a change;
   ``--second-only`` measures just that, on an already ingested store);
3. a no-op refresh at that many runs (target <= 20 ms);
4. the Runs page's queries: one sorted/filtered page, group rows with mean/std/n, the full list (<= 1 s);
5. a 6-run comparison chart of 10k-step series with EMA smoothing (<= 300 ms);
6. 20 series x 100k points -> 1,000 each (<= 200 ms; issue 17's row);
7. the RSS of this process (the dashboard's store side).

Stores smaller than 10,000 steps get a separate 6 x 10k-step store for (5); (6) always uses its own 20 x 100k
run. WORK_DIR is reused when it already holds a generated store of that size (``.size`` file).
"""
from __future__ import annotations

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


SECOND = r"""
import json, resource, sys, time
from pathlib import Path
def rss():
    return int(next(l for l in Path("/proc/self/status").read_text().splitlines() if l.startswith("VmRSS:")).split()[1]) / 1024
import duckdb, pandas, pyarrow, pyarrow.json, pyarrow.parquet   # imports are not the index: load them first
from tracer_core.store.runstore import RunStore
base = rss()
t0 = time.perf_counter()
s = RunStore(sys.argv[1], refresh_interval_s=None)
start = time.perf_counter() - t0
started = rss()
t0 = time.perf_counter()
ids = s.list_runs().run_id.tolist()
t1 = time.perf_counter()
df = s.series(ids[:6], max_points=1000)
t2 = time.perf_counter()
s.refresh()
t3 = time.perf_counter()
def med(fn, n=5):
    ts = []
    for _ in range(n):
        t = time.perf_counter(); fn(); ts.append(time.perf_counter() - t)
    return sorted(ts)[n // 2] * 1e3
warm = med(lambda: s.series(ids[6:12], max_points=1000))
groups = med(lambda: s.runs_groups(by=["method", "teacher"], eval_metric=("mnist", "accuracy")))
print(json.dumps({"start_s": start, "rss_base_mb": base, "rss_started_mb": started, "rss_end_mb": rss(),
                  "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "runs": len(ids),
                  "list_ms": (t1 - t0) * 1e3, "chart_ms": (t2 - t1) * 1e3, "chart_rows": len(df),
                  "refresh_ms": (t3 - t2) * 1e3, "chart_warm_ms": warm, "groups_ms": groups,
                  "in_memory": s.in_memory}))
"""


def second_process(data_dir: Path, code: Path) -> dict:
    """A second process on ``data_dir`` (the caller holds the DuckDB file) running ``code``'s store."""
    out = subprocess.run([sys.executable, "-c", SECOND, str(data_dir)], capture_output=True, text=True, cwd=code,
                         env={**os.environ, "PYTHONPATH": str(code)}, timeout=3600)
    if out.returncode:
        raise RuntimeError(out.stderr[-2000:])
    return json.loads(out.stdout.strip().splitlines()[-1])


def bench_second(data_dir: Path, other: Path | None, repeat: int) -> None:
    """Start time and memory of a second process while this one holds the file; with ``other``, that
    checkout's code and this one's alternate (interleaved, same load), medians over ``repeat`` each."""
    codes = {"this checkout": Path(__file__).resolve().parents[1]}
    if other is not None:
        codes = {f"{other}": other.resolve(), **codes}
    got: dict[str, list[dict]] = {k: [] for k in codes}
    for _ in range(repeat):
        for label, code in codes.items():
            got[label].append(second_process(data_dir, code))
    for label, rows in got.items():
        med = {k: statistics.median(r[k] for r in rows) for k in rows[0] if k != "in_memory"}
        assert all(r["in_memory"] for r in rows), "the second process was not refused the file"
        record(f"second process (file held by the first), {label}: start / RSS added by the store / peak RSS "
               f"/ list_runs / 6-run chart first, warm / Runs-page group rows; median of {repeat}",
               f"{med['start_s']:.2f} s / +{med['rss_started_mb'] - med['rss_base_mb']:.0f} MB (+"
               f"{med['rss_end_mb'] - med['rss_base_mb']:.0f} MB after the queries) / {med['peak_mb']:.0f} MB / "
               f"{med['list_ms']:.0f} ms / {med['chart_ms']:.0f} ms, {med['chart_warm_ms']:.0f} ms / "
               f"{med['groups_ms']:.0f} ms")


def bench_lab(data_dir: Path, runs: int, series: int, steps: int, other: Path | None = None,
              repeat: int = 1) -> RunStore:
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
    bench_second(data_dir, other, repeat)
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
    ap.add_argument("--compare-with", type=Path, help="another checkout: its second process runs too")
    ap.add_argument("--second-repeat", type=int, default=1, help="second-process runs per checkout")
    ap.add_argument("--second-only", action="store_true", help="only the second-process rows (ingests if needed)")
    a = ap.parse_args(argv)
    lab = a.work_dir / "lab"
    ensure(lab, a.runs, a.series, a.steps)
    if a.second_only:
        with RunStore(lab, refresh_interval_s=None):       # holds the file, as a running dashboard does
            bench_second(lab, a.compare_with, a.second_repeat)
        print(json.dumps(ROWS, indent=1))
        return
    store = bench_lab(lab, a.runs, a.series, a.steps, a.compare_with, a.second_repeat)
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
