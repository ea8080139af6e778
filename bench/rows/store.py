"""Run-store rows: the writer's overhead per training step (writer on vs off in alternating blocks of one real
run), the downsampling query (20 series x 100k points -> 1,000 each) and issue 13's comparison chart (6 runs of
10k-step series, smoothed on the full series, <= 1,000 points each; EMA and Gaussian). Setup helpers come from
bench/bench_store.py (its Toggle hooks and big-run writer), so both benches measure the same thing."""
from __future__ import annotations

import tempfile
import time
from pathlib import Path

from ..common import spread
from ..suite import Row, budget_row


def downsample_query(store, run_id: str, n_steps: int):
    """THE call the query row times (one place: the store's public API may change its signature)."""
    return store.series([run_id], max_points=1000, step_range=(0, n_steps - 1))


def chart_query(store, run_ids: list[str], smoothing):
    """THE call the chart rows time: one panel of 6 runs (bench/bench_lab_store.py's chart, same series)."""
    from bench.gen_lab_store import NAMES
    name, ctx = NAMES[0]
    return store.series(run_ids, [name], [ctx], max_points=1000, smoothing=smoothing)


def writer_overhead(quick: bool, device: str) -> list[Row]:
    from bench.bench_store import Toggle
    from tracer_core.config import load_preset
    from tracer_core.store.writer import RunWriter
    from tracer_core.training import run
    steps = 12 if quick else 60
    with tempfile.TemporaryDirectory(prefix="bench-writer-") as tmp:
        cfg = load_preset("tracer", [f"train.steps={steps}", "model.pretrained=none", "data.train_set=synthetic",
                                     'data.eval_sets=["synthetic"]', "train.eval_at_start=false",
                                     "data.max_eval_samples=16", "train.similarity_probe=0", "train.threads=1",
                                     f"train.device={device}"])
        hooks = Toggle(RunWriter.create(cfg, Path(tmp)))
        run(cfg, hooks)
    off, on = hooks.periods[False], hooks.periods[True]
    med, lo, hi = spread([b / a for a, b in zip(off, on)])       # consecutive off/on steps, paired
    return [Row("writer overhead per step (tracer preset, writer on vs off, alternating steps)",
                "the same run with the writer off", f"{spread(on)[0] * 1e3:.0f} ms/step",
                f"{spread(off)[0] * 1e3:.0f} ms/step", med, lo, hi, "≤ 1.05 (+5 %)", 1.05,
                note=f"{len(on)} pairs; median of on/off = {100 * (spread(on)[0] / spread(off)[0] - 1):+.2f} %")]


def query_latency(quick: bool, device: str) -> list[Row]:
    from bench.bench_store import write_big_run
    from tracer_core.store.runstore import RunStore
    n_steps, n_series, reps = (10_000, 20, 5) if quick else (100_000, 20, 10)
    with tempfile.TemporaryDirectory(prefix="bench-query-") as tmp:
        data_dir = Path(tmp) / "store"
        run_id = write_big_run(data_dir, n_steps, n_series)
        store = RunStore(data_dir, refresh_interval_s=None)
        try:
            downsample_query(store, run_id, n_steps)                  # warm: DuckDB plans, pandas imports
            lat = []
            for _ in range(reps):
                t0 = time.perf_counter()
                df = downsample_query(store, run_id, n_steps)
                lat.append(time.perf_counter() - t0)
        finally:
            store.close()
        per = df.groupby("name").size()
        rows = [budget_row(f"{n_series} series × {n_steps:,} → 1,000 each (RunStore.series)", lat, 200.0, "ms", 1e3,
                           peer="budget 200 ms (TensorBoard: not installed, not run)",
                           note=f"{reps} queries; rows per series {per.min()}–{per.max()}")]
        return rows + chart_latency(Path(tmp) / "chart", quick)


def chart_latency(data_dir: Path, quick: bool) -> list[Row]:
    from bench.gen_lab_store import generate
    from tracer_core.metrics.smoothing import Smoothing
    from tracer_core.store.runstore import RunStore
    n_series, n_steps, reps = (2, 2_000, 3) if quick else (20, 10_000, 11)
    ids = generate(data_dir, 6, n_series, n_steps)           # issue 13's chart: its own store, writer format
    out = []
    with RunStore(data_dir, refresh_interval_s=None) as store:
        for sm in (Smoothing("ema", 0.6), Smoothing("gaussian", 10)):
            chart_query(store, ids, sm)                                  # warm (scipy loads here)
            lat = []
            for _ in range(reps):
                t0 = time.perf_counter()
                df = chart_query(store, ids, sm)
                lat.append(time.perf_counter() - t0)
            out.append(budget_row(f"6-run chart, {n_steps:,}-step series, {sm.kind} on the full series, ≤ 1,000 "
                                  "points each", lat, 300.0, "ms", 1e3, peer="budget 300 ms (issue 13)",
                                  note=f"{reps} queries; {len(df)} rows"))
    return out
