"""Browser soak of the Live dynamics view during the demo: does memory stay flat over minutes of auto-refresh?

Starts ``streamlit run app.py`` on a fresh data folder (as tests/test_browser.py does), opens it in headless
Chromium (Playwright, /usr/bin/chromium), clicks the Home demo button (which queues the three demo runs and
opens Live dynamics) and keeps that page open with its ``st.fragment(run_every=2 s)`` refresh. At the start,
every minute and at the end it records

* the server's RSS (``VmRSS`` of /proc/<pid>/status) and, separately, its worker children's (training runs);
* the page's JS heap (CDP ``Performance.getMetrics`` JSHeapUsedSize, read after a CDP-forced GC so the figure
  is the live heap, not garbage awaiting collection), its DOM node count and the points in the KL chart;
* ``uptime`` load.

The demo is made long enough to train through the soak (``--steps``, applied through the documented
``TRACER_DEMO_OVERRIDES``): a finished demo stops the auto-refresh and would soak nothing.

    python bench/soak_live.py --minutes 10 [--steps 3000] [--out bench/soak_live.json]
        [--trace bench/soak_trace.jsonl] [--env MALLOC_ARENA_MAX=2 ...]

``--trace`` runs the server under bench/traced_server.py (tracemalloc, glibc and DuckDB memory, once a minute
from the "start" sample); ``--env`` adds to the server's environment (allocator experiments).
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run", "--disable-quic"]
POINTS_JS = """() => Object.fromEntries([...document.querySelectorAll('.js-plotly-plot')].map(gd =>
  [((gd.layout || {}).title || {}).text || '', (gd.data || []).reduce((n, t) => n + (t.x ? t.x.length : 0), 0)]))"""


def rss_kb(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def children(pid: int) -> list[int]:
    """All descendants of ``pid`` (from /proc/<pid>/task/*/children)."""
    out = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            out += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            continue
    return out + [g for c in out for g in children(c)]


def load() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def sample(t0: float, server: int, page, cdp, label: str) -> dict:
    cdp.send("HeapProfiler.collectGarbage")
    metrics = {m["name"]: m["value"] for m in cdp.send("Performance.getMetrics")["metrics"]}
    kids = children(server)
    try:
        kl = sum(n for title, n in page.evaluate(POINTS_JS).items() if "KL(teacher" in title)
        caption = page.get_by_text("points in the KL chart").first.inner_text(timeout=5_000)
    except Exception as e:  # a page mid-rerun: record what failed, keep soaking
        kl, caption = -1, f"unreadable: {type(e).__name__}"
    row = {"label": label, "t_s": round(time.monotonic() - t0, 1), "server_rss_mb": rss_kb(server) / 1024,
           "workers_rss_mb": sum(rss_kb(c) for c in kids) / 1024, "n_children": len(kids),
           "js_heap_used_mb": metrics.get("JSHeapUsedSize", 0) / 2**20,
           "js_heap_total_mb": metrics.get("JSHeapTotalSize", 0) / 2**20, "dom_nodes": int(metrics.get("Nodes", 0)),
           "kl_points": kl, "caption": caption, "uptime": load()}
    print(json.dumps(row), flush=True)
    return row


def start_server(data_dir: Path, steps: int, trace: Path | None, extra_env: dict):
    """``streamlit run app.py`` on ``data_dir`` (under bench/traced_server.py with ``trace``), once healthy:
    ``(process, url, its log file)``."""
    port = free_port()
    env = {**os.environ, "TRACER_DATA_DIR": str(data_dir), **extra_env,
           "TRACER_DEMO_OVERRIDES": json.dumps([f"train.steps={steps}", "train.threads=1"])}
    launcher = ["-m", "streamlit"]
    if trace is not None:       # the same server with a memory tracer inside (bench/traced_server.py)
        trace.unlink(missing_ok=True)
        trace.with_name(trace.name + ".start").unlink(missing_ok=True)
        launcher, env["SOAK_TRACE_OUT"] = [str(ROOT / "bench" / "traced_server.py")], str(trace)
    log = open(data_dir / "server.log", "w")
    server = subprocess.Popen([sys.executable, *launcher, "run", "app.py", "--server.headless=true",
                               f"--server.port={port}", "--server.address=127.0.0.1",
                               "--browser.gatherUsageStats=false", "--server.fileWatcherType=none"],
                              cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    for _ in range(120):
        try:
            if urllib.request.urlopen(f"{url}/_stcore/health", timeout=1).status == 200:
                break
        except OSError:
            time.sleep(0.5)
    return server, url, log


def stop_server(server: subprocess.Popen, log, data_dir: Path) -> None:
    server.send_signal(signal.SIGTERM)
    try:
        server.wait(timeout=15)
    except subprocess.TimeoutExpired:
        server.kill()
    log.close()
    for status in (data_dir / "runs").glob("*/status.json"):   # workers stop with the server; make sure
        try:
            pid = int(json.loads(status.read_text()).get("pid") or 0)
            if pid and pid != os.getpid():
                os.kill(pid, signal.SIGTERM)
        except (ValueError, OSError):
            pass


def soak(minutes: float, steps: int, data_dir: Path, trace: Path | None = None, extra_env: dict | None = None
         ) -> list[dict]:
    from playwright.sync_api import expect, sync_playwright

    server, url, log = start_server(data_dir, steps, trace, extra_env or {})
    rows = []
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
            page = browser.new_context(viewport={"width": 1400, "height": 2200}).new_page()
            cdp = page.context.new_cdp_session(page)
            cdp.send("Performance.enable")
            page.goto(url)
            demo = page.get_by_role("button", name="Run the EMA vs WMA demo")
            expect(demo).to_be_visible(timeout=60_000)
            demo.click()
            expect(page.get_by_text("Live: refreshing every").first).to_be_visible(timeout=120_000)
            drawn = f"Object.entries(({POINTS_JS})()).some(([t, n]) => t.includes('KL(teacher') && n > 0)"
            page.wait_for_function(drawn, timeout=180_000)     # "start" = the first KL points drawn
            t0 = time.monotonic()
            if trace is not None:
                trace.with_name(trace.name + ".start").touch()      # the tracer's first line and diff baseline
            rows.append(sample(t0, server.pid, page, cdp, "start"))
            for minute in range(1, int(minutes) + 1):
                time.sleep(max(0.0, t0 + 60 * minute - time.monotonic()))
                rows.append(sample(t0, server.pid, page, cdp, "end" if minute == int(minutes) else f"{minute} min"))
            rows[-1]["live_at_end"] = page.get_by_text("Live: refreshing every").count() > 0
            browser.close()
    finally:
        stop_server(server, log, data_dir)
        if trace is not None:
            trace.with_name(trace.name + ".start").unlink(missing_ok=True)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--minutes", type=float, default=10)
    ap.add_argument("--steps", type=int, default=3000, help="demo run length, so the demo trains through the soak")
    ap.add_argument("--out", default=str(ROOT / "bench" / "soak_live.json"))
    ap.add_argument("--trace", help="run the server under bench/traced_server.py, its JSON lines to this file")
    ap.add_argument("--env", action="append", default=[], metavar="K=V", help="extra server environment")
    a = ap.parse_args()
    extra = dict(kv.split("=", 1) for kv in a.env)
    with tempfile.TemporaryDirectory(prefix="tracer-soak-") as tmp:
        rows = soak(a.minutes, a.steps, Path(tmp), Path(a.trace).resolve() if a.trace else None, extra)
    Path(a.out).write_text(json.dumps(rows, indent=1))
    s, e = rows[0], rows[-1]
    print(f"server RSS {s['server_rss_mb']:.0f} -> {e['server_rss_mb']:.0f} MB; JS heap "
          f"{s['js_heap_used_mb']:.1f} -> {e['js_heap_used_mb']:.1f} MB; DOM nodes {s['dom_nodes']} -> "
          f"{e['dom_nodes']}; KL points {s['kl_points']} -> {e['kl_points']}; live at end: {e.get('live_at_end')}")


if __name__ == "__main__":
    main()
