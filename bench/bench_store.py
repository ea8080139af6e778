"""Run-store benchmarks (prints, never asserts): ``python bench/bench_store.py [--steps 30] [--no-training]``.

1. Writer overhead per training step: the writer's own cost measured directly (on_step on the training
   thread, formatting + append in the flusher thread), and the real loop (tracer preset, tiny-vit, synthetic
   data, batch 64: a ~0.3-0.5 s CPU step) with the writer on and off in alternating blocks of one run.
2. Ingestion throughput: a fresh RunStore indexing 20 series x 100,000 steps (2 M rows), then an
   incremental refresh.
3. Query latency: 20 series of 100,000 points each, downsampled to 1,000 points per series.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tracer_core.config import RunConfig, load_preset  # noqa: E402
from tracer_core.store.runstore import RunStore  # noqa: E402
from tracer_core.store.writer import RunWriter  # noqa: E402

STAT_NAMES = ["teacher_avg_entropy", "teacher_avg_confidence", "teacher_student_agreement", "teacher_student_kl",
              "teacher_prediction_diversity", "teacher_accuracy", "student_accuracy", "teacher_student_accuracy_diff",
              "teacher_gt_prob", "student_gt_prob", "teacher_effective_temperature"]


def realistic_scalars(step: int) -> dict:
    """About what a TRACER step reports: 11 statistics x 3 directions + loss terms + optimiser scalars."""
    out = {(n, c): 0.5 + 1e-6 * step for n in STAT_NAMES for c in ("img", "text", "combined")}
    out.update({("teacher_student_top5_alignment", c): 0.7 for c in ("img", "text")})
    out.update({("loss", c): 1.0 / (step + 1) for c in ("total", "clip_loss", "distill_loss")})
    out.update({("lr", ""): 1e-5, ("grad_norm", ""): 1.0, ("logit_scale", ""): 100.0, ("teacher_weight", ""): 0.01,
                ("step_time", ""): 0.3})
    return out


def bench_writer_micro(tmp: Path, n: int = 5000) -> None:
    w = RunWriter.create(RunConfig(), tmp, flush_s=3600)   # no background flush while timing
    scalars = [realistic_scalars(s) for s in range(n)]
    t0 = time.perf_counter()
    for s in range(n):
        w.on_step(s, scalars[s])
    t_call = (time.perf_counter() - t0) / n
    t0 = time.perf_counter()
    w.flush()
    t_flush = (time.perf_counter() - t0) / n
    w.close("done")
    k = len(scalars[0])
    print(f"writer, direct: {k} scalars/step: on_step {t_call * 1e6:.1f} us (training thread), "
          f"format+append {t_flush * 1e6:.1f} us (flusher thread); total {(t_call + t_flush) * 1e3:.3f} ms/step "
          f"= {(t_call + t_flush) / 0.3 * 100:.3f} % of a 0.3 s step")


class Toggle:
    """Hooks that forward to the writer in alternating blocks of steps ("on") or not ("off"), and record
    the wall time of each step period: writer on vs off side by side in one training run."""

    def __init__(self, writer, block: int = 1):
        self.writer, self.block, self.last = writer, block, None
        self.periods: dict[bool, list[float]] = {True: [], False: []}

    def __getattr__(self, name):          # on_start, on_eval, on_checkpoint, on_end, should_stop
        return getattr(self.writer, name)

    def on_step(self, step, scalars):
        now = time.perf_counter()
        on = (step // self.block) % 2 == 1
        if self.last is not None and step >= 4:      # skip warm-up steps
            self.periods[on].append(now - self.last)
        if on:
            self.writer.on_step(step, scalars)
        self.last = time.perf_counter()   # the period covers the rest of the step (and the flusher's work)


def bench_writer_training(tmp: Path, steps: int) -> None:
    from tracer_core.training import run
    cfg = load_preset("tracer", [f"train.steps={steps}", "model.pretrained=none", "data.train_set=synthetic",
                                 'data.eval_sets=["synthetic"]', "train.eval_at_start=false",
                                 "data.max_eval_samples=64", "train.threads=1"])
    hooks = Toggle(RunWriter.create(cfg, tmp))
    run(cfg, hooks)
    off, on = statistics.median(hooks.periods[False]), statistics.median(hooks.periods[True])
    print(f"writer, real loop (tracer preset: WMA teacher, batch 64, 1 thread; {steps} steps, writer on/off in "
          f"alternating blocks of {hooks.block}): median step {off * 1e3:.1f} ms off vs {on * 1e3:.1f} ms on "
          f"-> ratio {on / off:.4f} ({(on / off - 1) * 100:+.2f} %; target <= +5 %)")


def write_big_run(data_dir: Path, n_steps: int, n_series: int) -> str:
    names = [f"stat_{i:02d}" for i in range(n_series)]
    w = RunWriter.create(RunConfig(), data_dir, flush_s=3600)
    for s in range(n_steps):
        w.on_step(s, {(nm, "combined"): ((s * (i + 7)) % 1009) / 1009.0 for i, nm in enumerate(names)})
        if s % 10_000 == 9_999:
            w.flush()
    w.close("done")
    return w.run_id


def bench_store(tmp: Path, n_steps: int = 100_000, n_series: int = 20) -> None:
    data_dir = tmp / "store-bench"
    t0 = time.perf_counter()
    run_id = write_big_run(data_dir, n_steps, n_series)
    print(f"(setup: wrote {n_steps * n_series:,} rows through RunWriter in {time.perf_counter() - t0:.1f} s)")
    t0 = time.perf_counter()
    store = RunStore(data_dir, refresh_interval_s=None)     # the constructor ingests everything
    dt = time.perf_counter() - t0
    print(f"ingestion, full: {n_steps * n_series:,} rows in {dt:.2f} s = {n_steps * n_series / dt:,.0f} rows/s")
    w = RunWriter(data_dir / "runs" / run_id, flush_s=3600)
    for s in range(n_steps, n_steps + 1000):
        w.on_step(s, {(f"stat_{i:02d}", "combined"): 0.5 for i in range(n_series)})
    w.close("done")
    t0 = time.perf_counter()
    stats = store.refresh()
    dt = time.perf_counter() - t0
    print(f"ingestion, incremental: {stats['rows']:,} new rows in {dt * 1e3:.1f} ms = {stats['rows'] / dt:,.0f} rows/s")
    lat = []
    for _ in range(10):
        t0 = time.perf_counter()
        df = store.series([run_id], max_points=1000, step_range=(0, n_steps - 1))
        lat.append(time.perf_counter() - t0)
    per = df.groupby("name").size()
    print(f"query: {n_series} series x {n_steps:,} points -> <= 1,000 each: median {statistics.median(lat) * 1e3:.0f} ms, "
          f"min {min(lat) * 1e3:.0f} ms over 10 (rows per series: {per.min()}..{per.max()}; target <= 200 ms)")
    t0 = time.perf_counter()
    store.summaries([run_id], names=["stat_00"])
    print(f"summaries of one 100k-point series: {(time.perf_counter() - t0) * 1e3:.0f} ms")
    store.close()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--steps", type=int, default=80, help="training steps for the overhead bench")
    p.add_argument("--no-training", action="store_true", help="skip the real-loop overhead bench")
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        bench_writer_micro(tmp)
        if not args.no_training:
            bench_writer_training(tmp, args.steps)
        bench_store(tmp)


if __name__ == "__main__":
    main()
