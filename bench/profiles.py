"""Profiles of the suite's three misses, as markdown for bench/RESULTS.md (`python -m bench --profiles`):

1. `python -X importtime -c "import tracer_core.api"`: the top-level imports by cumulative time;
2. cProfile of the first page render (app.py + Home through Streamlit's AppTest, fresh interpreter);
3. cProfile of the downsampling query (RunStore.series, 20 series).
Each runs in a fresh subprocess so module caches are cold, as for a user.
"""
from __future__ import annotations

import subprocess
import sys
import textwrap

from .common import ROOT

RENDER = textwrap.dedent("""
    import cProfile, os, pstats, sys, tempfile
    os.environ["TRACER_DATA_DIR"] = tempfile.mkdtemp(prefix="bench-prof-")
    os.environ.setdefault("TRACER_WARM_WORKER", "0")      # the spare worker is a separate process anyway
    prof = cProfile.Profile()
    prof.enable()
    from streamlit.testing.v1 import AppTest
    at = AppTest.from_file("app.py", default_timeout=300).run()
    prof.disable()
    assert not at.exception, at.exception
    st = pstats.Stats(prof)
    {REPORT}
""")
QUERY = textwrap.dedent("""
    import cProfile, pstats, sys, tempfile
    from pathlib import Path
    sys.path.insert(0, ".")
    from bench.bench_store import write_big_run
    from bench.rows.store import downsample_query
    from tracer_core.store.runstore import RunStore
    n = int(sys.argv[1])
    d = Path(tempfile.mkdtemp(prefix="bench-prof-")) / "store"
    run_id = write_big_run(d, n, 20)
    store = RunStore(d, refresh_interval_s=None)
    downsample_query(store, run_id, n)
    prof = cProfile.Profile()
    prof.enable()
    for _ in range(3):
        downsample_query(store, run_id, n)
    prof.disable()
    st = pstats.Stats(prof)
    {REPORT}
""")
# the top functions by cumulative time, as "| cumulative s | calls | function |" rows on stdout
REPORT = ("for (f, line, fn), (cc, nc, tt, ct, _) in sorted(st.stats.items(), key=lambda kv: -kv[1][3])[:{top}]:\n"
          "        where = '/'.join(f.split('/')[-2:])\n"
          "        print(f'| {{ct:.3f}} | {{nc}} | `{{fn}}` ({{where}}:{{line}}) |')")


def _run(code: str, *args: str, timeout: float = 600) -> str:
    proc = subprocess.run([sys.executable, "-c", code, *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout)
    if proc.returncode != 0:
        return f"(profile failed: {proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else proc.returncode})"
    return proc.stdout.strip()


def import_profile(top: int = 12) -> str:
    """Top-level imports of `import tracer_core.api` by cumulative time (python -X importtime)."""
    err = subprocess.run([sys.executable, "-X", "importtime", "-c", "import tracer_core.api"], cwd=ROOT,
                         capture_output=True, text=True).stderr
    rows = []
    for line in err.splitlines():
        if not line.startswith("import time:") or "|" not in line:
            continue
        head, cum_us, name = line.split("|", 2)              # "import time: self | cumulative |  <indent>name"
        try:
            cum = int(cum_us)
        except ValueError:                                   # the header line
            continue
        name = name[1:]
        depth = (len(name) - len(name.lstrip())) // 2
        rows.append((cum, depth, name.strip()))
    total = max((c for c, d, _ in rows if d == 0), default=0)
    tops = sorted([r for r in rows if r[1] <= 1], reverse=True)[:top]
    out = [f"`python -X importtime -c \"import tracer_core.api\"`: {total / 1e6:.2f} s in all (largest imports, "
           "depth 0-1, cumulative):", "", "| cumulative s | depth | module |", "|---|---|---|"]
    out += [f"| {c / 1e6:.3f} | {d} | `{n}` |" for c, d, n in tops]
    return "\n".join(out)


def profiles(quick: bool) -> str:
    top = 8 if quick else 15
    report = REPORT.format(top=top)
    parts = ["### Profiles of the misses", "", import_profile(top), "",
             "cProfile of the first page render (AppTest of app.py: router, sidebar, Home; fresh interpreter), "
             "top functions by cumulative time:", "", "| cumulative s | calls | function |", "|---|---|---|",
             _run(RENDER.replace("{REPORT}", report)), "",
             f"cProfile of the downsampling query (3 × RunStore.series, 20 series × {'10k' if quick else '100k'} "
             "→ 1,000), top functions by cumulative time:", "", "| cumulative s | calls | function |",
             "|---|---|---|", _run(QUERY.replace("{REPORT}", report), "10000" if quick else "100000")]
    return "\n".join(parts)
