"""Helpers every bench shares: the CLI run (`train --json --no-store`), interleaved timing, load, RSS, the lab
store's command line.

    res = train_cli("tracer", ["train.steps=30"])          # the summary JSON the CLI prints last
    times = interleave({"a": f, "b": g}, rounds=5)          # {"a": [t_r ...], "b": [...]}, order alternates
    med, lo, hi = spread(times["a"])
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Mapping

ROOT = Path(__file__).resolve().parents[1]


def train_command(preset: str, sets: list[str] = (), launcher: list[str] | None = None) -> list[str]:
    """argv of `python -m tracer_core train --preset P --json --no-store --set k=v ...` (launcher: e.g. torchrun)."""
    cmd = (launcher or [sys.executable]) + ["-m", "tracer_core", "train", "--preset", preset, "--json", "--no-store"]
    return cmd + [a for s in sets for a in ("--set", s)]


def last_json_line(stdout: str) -> dict:
    """The CLI prints its run summary as the last line of stdout (--json)."""
    lines = stdout.strip().splitlines()
    if not lines:
        raise RuntimeError("the CLI printed nothing on stdout")
    return json.loads(lines[-1])


def train_cli(preset: str, sets: list[str] = (), *, launcher: list[str] | None = None,
              env: Mapping[str, str] | None = None, timeout: float | None = None) -> dict:
    """Run the CLI as a user would; return its summary plus ``process_s`` (wall time of the whole process)."""
    t0 = time.perf_counter()
    proc = subprocess.run(train_command(preset, list(sets), launcher), cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"train --preset {preset} failed (exit {proc.returncode}):\n{proc.stderr[-2000:]}")
    result = last_json_line(proc.stdout)
    result["process_s"] = time.perf_counter() - t0
    return result


def interleave(fns: Mapping[str, Callable[[], float | None]], rounds: int) -> dict[str, list[float]]:
    """Call every fn once per round, the order reversed every other round (ABBA), so a load trend on the shared
    machine does not favour one side. A fn returns its own measured seconds, or None to be timed here."""
    out: dict[str, list[float]] = {k: [] for k in fns}
    names = list(fns)
    for r in range(rounds):
        for name in (names if r % 2 == 0 else names[::-1]):
            t0 = time.perf_counter()
            value = fns[name]()
            out[name].append(time.perf_counter() - t0 if value is None else float(value))
    return out


def spread(values: list[float]) -> tuple[float, float, float]:
    """(median, min, max)."""
    return statistics.median(values), min(values), max(values)


def paired_ratio(a: list[float], b: list[float]) -> tuple[float, float, float]:
    """Median (min, max) of the per-round ratios a_r / b_r: paired, so slow load drifts cancel."""
    return spread([x / y for x, y in zip(a, b)])


def load_avg() -> float:
    return os.getloadavg()[0]


# -- resident memory of a process tree, from /proc (no psutil on this machine) -----------------------------

def _rss_kb(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


def _children() -> dict[int, list[int]]:
    kids: dict[int, list[int]] = {}
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            ppid = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        kids.setdefault(ppid, []).append(int(d.name))
    return kids


def tree_rss_mb(root_pid: int) -> float:
    """Sum of VmRSS over ``root_pid`` and all its descendants, in MB."""
    kids, todo, total = _children(), [root_pid], 0
    while todo:
        pid = todo.pop()
        total += _rss_kb(pid)
        todo += kids.get(pid, [])
    return total / 1024.0


def lab_store_parser(doc: str, folder: str) -> argparse.ArgumentParser:
    """The lab-scale store's command line (gen_lab_store.py, bench_lab_store.py): the folder (argument name
    ``folder``) and the store's size, 1,000 runs x 20 series x 10,000 steps by default; the caller adds its own."""
    ap = argparse.ArgumentParser(description=doc.splitlines()[0])
    ap.add_argument(folder, type=Path)
    ap.add_argument("--runs", type=int, default=1000)
    ap.add_argument("--series", type=int, default=20)
    ap.add_argument("--steps", type=int, default=10_000)
    return ap
