"""Run-store rows: the writer's overhead per training step (writer on vs off in alternating blocks of one real
run) and the downsampling query (20 series x 100k points -> 1,000 each). Setup helpers come from
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
    return [budget_row(f"{n_series} series × {n_steps:,} → 1,000 each (RunStore.series)", lat, 200.0, "ms", 1e3,
                       peer="budget 200 ms (TensorBoard: not installed, not run)",
                       note=f"{reps} queries; rows per series {per.min()}–{per.max()}")]
