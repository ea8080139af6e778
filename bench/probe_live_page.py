"""Where the Live page's native memory goes (prints, never asserts): ``python bench/probe_live_page.py [--runs 400]``.

Runs app.py's Live dynamics page under Streamlit's AppTest in this process (no browser, no websocket) on a
generated store of 3 runs x 20 series x 600 steps (bench/gen_lab_store.py), ``--runs`` times, printing glibc's
bytes in use (mallinfo2) along the way; then closes the store and job runner (the cached services) and prints
them again. If what grew is gone after the close, the store's DuckDB connection held it (bench/RESULTS.md,
"Live view soak: where the server's memory goes").
"""
from __future__ import annotations

import argparse
import gc
import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]
import gen_lab_store as gen  # noqa: E402
from bench.traced_server import glibc_in_use_mb, rss_mb  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=400)
    n = ap.parse_args().runs
    data = Path(tempfile.mkdtemp(prefix="probe-live-")) / "data"
    ids = gen.generate(data, runs=3, n_series=20, steps=600)
    os.environ.update(TRACER_DATA_DIR=str(data), TRACER_WARM_WORKER="0")
    import streamlit as st
    from streamlit.testing.v1 import AppTest
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
    at.session_state["dynamics_runs"] = ids
    at.run()                                    # app.py first: it calls st.navigation
    at.switch_page("views/dynamics.py")
    for i in range(n + 1):
        at.run()
        if i % max(1, n // 5) == 0:
            print(f"page run {i}: glibc in use {glibc_in_use_mb():.1f} MB, rss {rss_mb():.1f} MB", flush=True)
    print(f"{len(at.get('plotly_chart'))} charts, {len(at.exception)} exceptions")
    before = glibc_in_use_mb()
    st.cache_resource.clear()                   # closes the store (its DuckDB connection) and the job runner
    gc.collect()
    print(f"after closing the store: glibc in use {glibc_in_use_mb():.1f} MB (was {before:.1f}), "
          f"rss {rss_mb():.1f} MB")


if __name__ == "__main__":
    main()
