"""Wall time of the default fine-tunes on this CPU: each demo strategy alone, and the three-strategy demo.

Targets (issue "Embedded default"): a default fine-tune in <= 2 min per strategy on the 2-core machine,
the three-strategy demo (FT, TRACER-loss with EMA every step, TRACER with WMA) in <= 5 min. Runs the CLI
exactly as a user would (`python -m tracer_core train --preset P --no-store --json`), one after the other,
and prints each run's wall time including process start, data and model loading and evaluations.

    python bench/bench_default_cpu.py [--presets ft tracer_ema tracer] [--set train.steps=300]
    python bench/bench_default_cpu.py --dashboard     # the Home page's one-click demo through the job runner

``--dashboard`` submits ``tracer_core.api.demo_configs()`` (the demo's own short settings) to a fresh
``JobRunner`` exactly as the Home button does (pre-warmed worker, ``cores - 1`` torch threads, one run at a
time) and prints each run's time from its start to its end and the total from the click to the last run's end.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from bench.common import train_cli  # noqa: E402  (the shared `train --json --no-store` runner)


def dashboard_demo() -> None:
    import tempfile

    sys.path.insert(0, str(ROOT))
    from tracer_core.api import demo_configs
    from tracer_core.jobs.runner import JobRunner
    from tracer_core.store.runfiles import read_json

    with tempfile.TemporaryDirectory(prefix="bench-demo-") as tmp:
        runner = JobRunner(tmp)
        try:
            runner.wait_warm(timeout=300)                 # the dashboard warms its spare while the user reads Home
            t0, load = time.time(), os.getloadavg()[0]
            ids = [runner.submit(cfg) for cfg in demo_configs()]
            for run_id in ids:
                st = runner.wait(run_id, timeout=1800)
                info = read_json(Path(tmp) / "runs" / run_id / "status.json") or {}
                cfg = json.loads((Path(tmp) / "runs" / run_id / "config.json").read_text())["config"]
                print(f"{cfg['method']:<7} teacher {cfg['teacher']['kind']:<5} {st.status}: "
                      f"{info['ended'] - info['started']:6.1f} s from start to end, "
                      f"ended {info['ended'] - t0:6.1f} s after the click", flush=True)
            print(f"one-click demo ({len(ids)} runs, {demo_configs()[0].train.steps} steps each): "
                  f"{time.time() - t0:.1f} s from the click to the last run's end (cores: {os.cpu_count()}, "
                  f"load avg {load:.1f} at the click, {os.getloadavg()[0]:.1f} at the end)")
        finally:
            runner.shutdown(cancel_running=True, timeout=60)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--presets", nargs="+", default=["ft", "tracer_ema", "tracer"])
    ap.add_argument("--set", action="append", default=[])
    ap.add_argument("--dashboard", action="store_true", help="time the one-click demo through the job runner")
    args = ap.parse_args()
    if args.dashboard:
        return dashboard_demo()
    total, rows = 0.0, []
    for preset in args.presets:
        res = train_cli(preset, ["train.device=cpu", *args.set])
        wall = res["process_s"]
        total += wall
        train_s = res["steps"] / res["steps_per_s"] if res["steps_per_s"] else float("nan")
        rows.append((preset, wall, train_s, res["steps"], res["final_eval"]["mnist"]["accuracy"]))
        print(f"{preset:<11} wall {wall:6.1f} s  (training {train_s:6.1f} s for {res['steps']} steps, "
              f"{train_s / res['steps']:.3f} s/step)  ID acc {rows[-1][4]:.3f}", flush=True)
    load = os.getloadavg()[0]
    print(f"three-strategy demo, sequential: {total:.1f} s  (cores: {os.cpu_count()}, load avg {load:.1f})")


if __name__ == "__main__":
    main()
