"""Store-side memory during a live view (prints, never asserts): ``python bench/probe_store_rss.py [--minutes 4]``.

Does the RSS of a process holding a RunStore grow with its refreshes or with the rows logged? A real RunWriter
appends rows like the demo (81 series per step, ~2 steps/s) for ``--minutes`` while a RunStore refreshes and
runs the Live page's kind of queries (list_runs, 8 smoothed series at <= 600 points) every 2 s; then as long
again with no new rows and the same queries. RSS (VmRSS) is printed every 30 s.
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

NAMES = [(f"stat_{i}", c) for i in range(27) for c in ("img", "text", "combined")]


def rss_mb() -> float:
    return int(Path("/proc/self/status").read_text().split("VmRSS:")[1].split()[0]) / 1024


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--minutes", type=float, default=4.0, help="length of each phase (writing, then idle)")
    phase = ap.parse_args().minutes * 60
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
        store.refresh()
        store.list_runs()
        for name, ctx in NAMES[:24:3]:
            store.series([writer.run_id], [name], [ctx], max_points=600, smoothing=Smoothing("ema", 0.6))
        time.sleep(2)
        if time.time() - last >= 30:
            last = time.time()
            print(f"t={last - t0:.0f} s {'writing' if writing else 'idle   '} step {step} rss {rss_mb():.0f} MB",
                  flush=True)
    store.close()
    writer.close("done")


if __name__ == "__main__":
    main()
