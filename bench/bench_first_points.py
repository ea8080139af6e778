"""Time to the demo's first live point, cold vs warm worker (prints, never asserts).

    python bench/bench_first_points.py [--rounds 3] [--poll 0.05]

Measures, for the first run of the one-click demo (``tracer_core.api.demo_configs()[0]``, real config:
embedded tiny CLIP, MNIST, five eval sets), the wall time from ``JobRunner.submit`` to the first row that
``RunStore.series([run_id])`` returns, polled every ``--poll`` seconds with no store refresh throttle
(the dashboard adds its own refresh interval and page timer on top). Per round: one cold start
(``warm=False``: ``python -m tracer_core.jobs.worker <run_dir>``) and one warm start (a spare worker that
finished its warm-up before the submit), each on a fresh data folder; the order alternates between rounds
so a load trend does not favour one side. After the first point the run is cancelled and waited for, so
rounds do not overlap. The load average before each measurement is printed: the machine is shared.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tracer_core.api import demo_configs  # noqa: E402
from tracer_core.jobs.runner import JobRunner  # noqa: E402
from tracer_core.store.runfiles import read_json  # noqa: E402
from tracer_core.store.runstore import RunStore  # noqa: E402


def measure(mode: str, poll_s: float) -> dict:
    with tempfile.TemporaryDirectory(prefix=f"bench-first-{mode}-") as tmp:
        runner = JobRunner(tmp, warm=mode == "warm")
        store = RunStore(tmp, refresh_interval_s=0.0)
        try:
            warm_s = None
            if mode == "warm":
                t = time.perf_counter()
                if not runner.wait_warm(timeout=300):
                    raise RuntimeError("the spare worker never became ready")
                warm_s = time.perf_counter() - t
            load = os.getloadavg()[0]
            t0, wall0 = time.perf_counter(), time.time()
            run_id = runner.submit(demo_configs()[0])
            while store.series([run_id], max_points=None).empty:
                if runner.status(run_id).status in ("failed", "interrupted", "cancelled"):
                    raise RuntimeError(f"{mode} run ended early: {runner.status(run_id)}")
                time.sleep(poll_s)
            first = time.perf_counter() - t0
            st = read_json(Path(tmp) / "runs" / run_id / "status.json") or {}
            started = (st.get("started") or wall0) - wall0      # on_start: model + data built
            runner.cancel(run_id)
        finally:
            runner.shutdown(cancel_running=True, timeout=120)
            store.close()
    return {"mode": mode, "first_point_s": first, "on_start_s": started, "load": load, "warm_up_s": warm_s}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--poll", type=float, default=0.05)
    args = ap.parse_args()
    print(f"cores: {os.cpu_count()}, load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    rows = []
    for r in range(args.rounds):
        for mode in (("cold", "warm") if r % 2 == 0 else ("warm", "cold")):
            row = measure(mode, args.poll)
            rows.append(row)
            extra = f", spare warm-up {row['warm_up_s']:.1f} s (before the submit)" if row["warm_up_s"] else ""
            print(f"round {r + 1} {mode:4s}: first point {row['first_point_s']:5.2f} s after submit "
                  f"(model + data built at {row['on_start_s']:5.2f} s), load {row['load']:.2f}{extra}", flush=True)
    print("\nmedian first point after submit:")
    for mode in ("cold", "warm"):
        xs = [r["first_point_s"] for r in rows if r["mode"] == mode]
        loads = [r["load"] for r in rows if r["mode"] == mode]
        print(f"  {mode}: {statistics.median(xs):5.2f} s  (min {min(xs):.2f}, max {max(xs):.2f}; "
              f"load {min(loads):.2f}-{max(loads):.2f})")
    print(f"load average at end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
