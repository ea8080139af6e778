"""Wall time of the default fine-tunes on this CPU: each demo strategy alone, and the three-strategy demo.

Targets (issue "Embedded default"): a default fine-tune in <= 2 min per strategy on the 2-core machine,
the three-strategy demo (FT, TRACER-loss with EMA every step, TRACER with WMA) in <= 5 min. Runs the CLI
exactly as a user would (`python -m tracer_core train --preset P --no-store --json`), one after the other,
and prints each run's wall time including process start, data and model loading and evaluations.

    python bench/bench_default_cpu.py [--presets ft tracer_ema tracer] [--set train.steps=300]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--presets", nargs="+", default=["ft", "tracer_ema", "tracer"])
    ap.add_argument("--set", action="append", default=[])
    args = ap.parse_args()
    total, rows = 0.0, []
    for preset in args.presets:
        cmd = [sys.executable, "-m", "tracer_core", "train", "--preset", preset, "--no-store", "--json",
               "--set", "train.device=cpu"] + [a for s in args.set for a in ("--set", s)]
        t0 = time.perf_counter()
        out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=True).stdout
        wall = time.perf_counter() - t0
        res = json.loads(out.strip().splitlines()[-1])
        total += wall
        train_s = res["steps"] / res["steps_per_s"] if res["steps_per_s"] else float("nan")
        rows.append((preset, wall, train_s, res["steps"], res["final_eval"]["mnist"]["accuracy"]))
        print(f"{preset:<11} wall {wall:6.1f} s  (training {train_s:6.1f} s for {res['steps']} steps, "
              f"{train_s / res['steps']:.3f} s/step)  ID acc {rows[-1][4]:.3f}", flush=True)
    load = os.getloadavg()[0]
    print(f"three-strategy demo, sequential: {total:.1f} s  (cores: {os.cpu_count()}, load avg {load:.1f})")


if __name__ == "__main__":
    main()
