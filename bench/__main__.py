"""`python -m bench [--quick] [--device cpu|cuda] [--only NAME ...] [--no-write]`: the performance suite.

Runs every row of the performance table (each against its peer or floor in the same run), prints one table
with target and PASS / MISS / ERROR per row and replaces the suite section of bench/RESULTS.md (machine,
load average, date). --quick is a smoke run (tests/test_bench_suite.py); --device cuda runs the device rows
(per-step ratios incl. ViT-B/16, the teacher update) on the GPU and refuses when CUDA is absent.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from pathlib import Path

from .suite import RESULTS, Row, report, write_results

# (name, module, function, device row?) in the order of the table
GROUPS = [("open_clip", "steps", "flyp_vs_open_clip", True), ("grid", "steps", "tracer_grid", True),
          ("whole_run", "wholerun", "whole_run", True), ("teacher_update", "teacher_update", "fused_vs_reference", True),
          ("writer", "store", "writer_overhead", False), ("query", "store", "query_latency", False),
          ("import", "app", "import_cold", False), ("first_render", "app", "first_render", False),
          ("first_point", "app", "click_to_first_point", False)]


# run order: cheap rows first, so a run cut short (shared machine, deadline) still holds most rows; the
# table is printed in GROUPS order
RUN_ORDER = ["import", "query", "teacher_update", "open_clip", "first_point", "first_render", "writer", "grid",
             "whole_run"]


def run_group(name: str, module: str, func: str, quick: bool, device: str) -> list[Row]:
    import importlib
    print(f"[bench] {name} (load {os.getloadavg()[0]:.1f}) ...", flush=True)
    t0 = time.time()
    try:
        fn = getattr(importlib.import_module(f".rows.{module}", __package__), func)
        rows = fn(quick, device)
    except Exception as e:                      # the table still gets a row saying what failed
        import traceback
        traceback.print_exc()
        rows = [Row.failed(name, e)]
    for r in rows:
        r.group = name
    print(f"[bench] {name}: {time.time() - t0:.0f} s, " + ", ".join(f"{r.verdict} {r.ratio:.2f}" for r in rows),
          flush=True)
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="smoke run (tens of seconds; numbers not meaningful)")
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--only", nargs="+", choices=[g[0] for g in GROUPS], help="run only these groups")
    ap.add_argument("--skip", nargs="+", choices=[g[0] for g in GROUPS], default=[], help="leave these groups out")
    ap.add_argument("--rows-out", default="", help="also save the rows as JSON (to merge into another run)")
    ap.add_argument("--merge-rows", nargs="+", default=[],
                    help="JSON rows of groups measured by another invocation at the same time (--rows-out)")
    ap.add_argument("--no-write", action="store_true", help=f"do not update {RESULTS.name}")
    ap.add_argument("--profiles", action="store_true", help="also profile the misses (bench/profiles.py)")
    args = ap.parse_args(argv)
    if args.device == "cuda":
        import torch
        if not torch.cuda.is_available():
            print("python -m bench --device cuda: no CUDA device is available here (torch.cuda.is_available() "
                  "is False); run it on a GPU machine, or drop --device for the CPU suite.", file=sys.stderr)
            return 2
    started, load0 = time.time(), os.getloadavg()
    rows: list[Row] = []
    mode = "quick" if args.quick else "full"
    for name, module, func, on_device in sorted(GROUPS, key=lambda g: RUN_ORDER.index(g[0])):
        if (args.only and name not in args.only) or name in args.skip or (args.device == "cuda" and not on_device):
            continue
        rows += run_group(name, module, func, args.quick, args.device)
        if not args.no_write:           # partial table after every group: a run cut short still leaves its rows
            write_results(report(rows, mode, started, load0) + f"\n\n(partial: measured up to {name})")
    for path in args.merge_rows:        # rows another invocation measured concurrently, placed in table order
        rows += [Row(**{k: v for k, v in d.items()}) for d in json.loads(Path(path).read_text())]
    order = {g[0]: i for i, g in enumerate(GROUPS)}
    rows.sort(key=lambda r: order.get(r.group, len(order)))
    if args.rows_out:
        Path(args.rows_out).write_text(json.dumps([dataclasses.asdict(r) for r in rows], indent=1))
    extra = ""
    if args.profiles:
        from .profiles import profiles
        extra = "\n" + profiles(args.quick)
    text = report(rows, mode, started, load0, extra)
    print("\n" + text)
    if not args.no_write:
        write_results(text)
        print(f"\n(written to {RESULTS})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
