"""`python -m bench --quick`: a smoke run of the performance suite (no timing assertions: the numbers are the
bench's business). It checks that every row of the performance table is there with a verdict and finite
ratio columns, that RESULTS.md's marked section is replaced rather than appended, and that --device cuda
refuses clearly where there is no GPU."""
from __future__ import annotations

import math
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
def _table_rows(text: str) -> list[list[str]]:
    lines = [ln for ln in text.splitlines() if ln.startswith("| ") and not ln.startswith("| measure")]
    return [[c.strip() for c in ln.strip("|").split("|")] for ln in lines if not set(ln) <= set("|-")]


def test_suite_module_units(tmp_path):
    from bench.suite import BEGIN, END, Row, budget_row, write_results
    assert Row("m", "p", "o", "q", 1.2, 1.1, 1.3, "≤ 1.4", 1.4).verdict == "PASS"
    assert Row("m", "p", "o", "q", 1.5, 1.1, 1.6, "≤ 1.4", 1.4).verdict == "MISS"
    assert Row("m", "p", "o", "q", 2.0, 1.1, 1.6, "≥ 3", 3.0, higher_is_better=True).verdict == "MISS"
    assert Row.failed("m", ValueError("boom")).verdict == "ERROR"
    assert budget_row("q", [0.1, 0.3, 0.2], 0.2).ratio == pytest.approx(1.0)
    path = tmp_path / "RESULTS.md"
    path.write_text("# Benchmark results\n\nintro\n\n## Other section\nkept\n")
    write_results("first", path)
    write_results("second", path)
    text = path.read_text()
    assert text.count(BEGIN) == 1 and text.count(END) == 1 and "second" in text and "first" not in text
    assert "## Other section\nkept" in text and text.index(BEGIN) < text.index("## Other section")


def test_device_cuda_refuses_without_gpu():
    import torch
    if torch.cuda.is_available():
        pytest.skip("a GPU is present: the refusal path does not apply")
    proc = subprocess.run([sys.executable, "-m", "bench", "--device", "cuda", "--no-write"], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and "no CUDA device" in proc.stderr


# the groups the suite's smoke run covers: the whole --quick run takes ~10 min on the 2-core machine (it trains,
# starts servers and Chromium), too long for every CI run; these four exercise the harness end to end in ~1 min
SMOKE = {"import": r"`import tracer_core.api` cold", "query": r"20 series × [\d,]+ → 1,000 each",
         "writer": r"writer overhead per step", "teacher_update": r"fused WMA update at ViT-B/16 size"}


def test_every_row_of_the_issue_table_has_a_group():
    from bench.__main__ import GROUPS, RUN_ORDER
    assert sorted(RUN_ORDER) == sorted(g[0] for g in GROUPS) and len(GROUPS) == 9


def test_quick_suite_prints_its_rows_with_a_verdict():
    proc = subprocess.run([sys.executable, "-m", "bench", "--quick", "--no-write", "--only", *SMOKE], cwd=ROOT,
                          capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = _table_rows(proc.stdout)
    names = [r[0] for r in rows]
    for pattern in SMOKE.values():
        assert any(re.search(pattern, n) for n in names), f"no row matches {pattern!r}: {names}"
    for r in rows:
        assert r[6] in ("PASS", "MISS", "ERROR"), r
        if r[6] == "ERROR":      # only where the machine lacks what the row needs (e.g. Chromium)
            assert "not found" in r[8] or "Executable doesn't exist" in r[8], f"row {r[0]!r} failed: {r[8]}"
            continue
        med, lo, hi = map(float, re.match(r"([-\d.e]+) \(([-\d.e]+)–([-\d.e]+)\)", r[4]).groups())
        assert all(math.isfinite(x) for x in (med, lo, hi)) and lo <= med <= hi, r
