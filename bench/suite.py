"""The performance suite: every row measured against its peer or floor in the same run, one table.

A row's ``ratio`` is ours / peer where a peer runs in the same process or round (median of paired per-round
ratios, min-max beside it), or ours / budget where the target is an absolute budget (then the peer column
names the budget). ``verdict``: PASS when the ratio meets the target, MISS when not, ERROR when the
measurement failed (the message is in the note).
"""
from __future__ import annotations

import datetime as _dt
import math
import os
import platform
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"
BEGIN, END = "<!-- bench-suite:begin -->", "<!-- bench-suite:end -->"
VERDICTS = ("PASS", "MISS", "ERROR")


@dataclass
class Row:
    measure: str
    peer: str
    ours: str
    peer_value: str
    ratio: float
    lo: float
    hi: float
    target: str
    limit: float
    higher_is_better: bool = False
    note: str = ""
    load: float = field(default_factory=lambda: os.getloadavg()[0])
    error: str = ""
    group: str = ""          # the suite group that measured it (set by bench/__main__.py)

    @property
    def verdict(self) -> str:
        if self.error or not math.isfinite(self.ratio):
            return "ERROR"
        ok = self.ratio >= self.limit if self.higher_is_better else self.ratio <= self.limit
        return "PASS" if ok else "MISS"

    @classmethod
    def failed(cls, measure: str, exc: BaseException) -> "Row":
        msg = f"{type(exc).__name__}: {exc}".splitlines()[0][:200]
        return cls(measure, "–", "–", "–", math.nan, math.nan, math.nan, "–", math.nan, error=msg, note=msg)

    @classmethod
    def guard(cls, measure: str, fn: Callable[[], "Row"]) -> "Row":
        try:
            return fn()
        except Exception as e:                      # one failed row must not lose the others
            traceback.print_exc()
            return cls.failed(measure, e)


def budget_row(measure: str, seconds: list[float], budget: float, unit: str = "s", scale: float = 1.0,
               peer: str = "", note: str = "") -> Row:
    """An absolute-budget row: ratio = median / budget (<= 1 passes)."""
    xs = sorted(v * scale for v in seconds)
    med = xs[len(xs) // 2] if len(xs) % 2 else (xs[len(xs) // 2 - 1] + xs[len(xs) // 2]) / 2
    fmt = (lambda v: f"{v:.0f} {unit}") if unit in ("ms", "MB") else (lambda v: f"{v:.2f} {unit}")
    return Row(measure, peer or f"budget {fmt(budget)}", f"{fmt(med)} ({fmt(xs[0])}–{fmt(xs[-1])})", fmt(budget),
               med / budget, xs[0] / budget, xs[-1] / budget, f"≤ {fmt(budget)}", 1.0, note=note)


def machine() -> dict:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(),
            "date": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")}


def _cell(x: float) -> str:
    return f"{x:.2f}" if math.isfinite(x) else "nan"


def table(rows: list[Row]) -> str:
    out = ["| measure | peer / floor | ours | peer | ratio (median, min–max) | target | verdict | load | note |",
           "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        ratio = f"{_cell(r.ratio)} ({_cell(r.lo)}–{_cell(r.hi)})"
        out.append(f"| {r.measure} | {r.peer} | {r.ours} | {r.peer_value} | {ratio} | {r.target} | {r.verdict} "
                   f"| {r.load:.1f} | {r.note} |")
    return "\n".join(out)


def report(rows: list[Row], mode: str, started: float, load0: tuple, extra: str = "") -> str:
    m, load1 = machine(), os.getloadavg()
    head = (f"`python -m bench{' --quick' if mode == 'quick' else ''}` — {m['date']}; {m['cpu']}, {m['cores']} cores, "
            f"Python {m['python']}; load average (1/5/15 min) {' / '.join(f'{x:.1f}' for x in load0)} at the start, "
            f"{' / '.join(f'{x:.1f}' for x in load1)} at the end; {time.time() - started:.0f} s in all.")
    # Only the start load says whether others shared the machine: by the end the suite's own workers load it
    # (a quiet run ends near 2 on 2 cores), so the end load cannot tell a shared run from a quiet one.
    shared = " **Measured under load** (the machine was shared): absolute times are inflated; the paired " \
             "ratios are the figures to read." if load0[0] > (m["cores"] or 1) * 0.5 else ""
    return "\n".join([head + shared, "", table(rows)] + ([extra] if extra else []))


def write_results(text: str, path: Path = RESULTS) -> None:
    """Replace the marked suite section of RESULTS.md (append it the first time); the rest is kept."""
    block = f"{BEGIN}\n## Performance suite (`python -m bench`)\n\n{text}\n{END}"
    old = path.read_text() if path.exists() else "# Benchmark results\n"
    if BEGIN in old and END in old:
        new = old[:old.index(BEGIN)] + block + old[old.index(END) + len(END):]
    else:
        head, sep, rest = old.partition("\n## ")
        new = head.rstrip() + "\n\n" + block + "\n" + (sep + rest if sep else "")
    path.write_text(new)
