"""Dashboard rows: `import tracer_core.api` cold, server start -> first rendered page in headless Chromium vs a
bare Streamlit hello page (interleaved), click -> first live point (warm worker, bench/bench_first_points.py),
and the dashboard + workers' peak RSS while the real demo runs (full mode)."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from ..common import ROOT, interleave, paired_ratio, spread, tree_rss_mb
from ..suite import Row, budget_row

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run", "--disable-quic"]
IMPORT_PROBE = ("import sys, time; t = time.perf_counter(); import tracer_core.api; "
                "print(time.perf_counter() - t, 'torch' in sys.modules)")
HELLO = 'import streamlit as st\nst.title("Hello")\nst.write("A bare Streamlit page.")\n'


def import_cold(quick: bool, device: str) -> list[Row]:
    """In-process import time of tracer_core.api, each in a fresh interpreter (cold module state)."""
    times, torch_seen = [], False
    for _ in range(3 if quick else 7):
        out = subprocess.run([sys.executable, "-c", IMPORT_PROBE], cwd=ROOT, capture_output=True, text=True,
                             check=True).stdout.split()
        times.append(float(out[0]))
        torch_seen |= out[1] == "True"
    return [budget_row("`import tracer_core.api` cold (fresh interpreter, in-process time)", times, 0.5, "s",
                       note=f"{len(times)} subprocesses; torch imported: {'YES (architecture rule broken)' if torch_seen else 'no'}")]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _kill_tree(pid: int) -> None:
    """SIGTERM the server we started and every descendant (its job workers), by pid."""
    from ..common import _children
    kids, todo, pids = _children(), [pid], []
    while todo:
        p = todo.pop()
        pids.append(p)
        todo += kids.get(p, [])
    for p in pids:
        try:
            os.kill(p, signal.SIGTERM)
        except ProcessLookupError:
            pass


class Server:
    """`streamlit run SCRIPT` on a free port, started in __enter__ (the clock starts at Popen)."""

    def __init__(self, script: Path, data_dir: Path):
        self.script, self.data_dir, self.port = script, data_dir, _free_port()
        self.url = f"http://127.0.0.1:{self.port}"

    def __enter__(self):
        env = {**os.environ, "TRACER_DATA_DIR": str(self.data_dir)}
        self.log = open(self.data_dir / "server.log", "w")
        self.t0, self.t0_wall = time.perf_counter(), time.time()
        self.proc = subprocess.Popen([sys.executable, "-m", "streamlit", "run", str(self.script),
                                      "--server.headless=true", f"--server.port={self.port}",
                                      "--server.address=127.0.0.1", "--browser.gatherUsageStats=false",
                                      "--server.fileWatcherType=none"], cwd=ROOT, env=env, stdout=self.log,
                                     stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if urllib.request.urlopen(f"{self.url}/_stcore/health", timeout=1).status == 200:
                    return self
            except OSError:
                if self.proc.poll() is not None:
                    raise RuntimeError((self.data_dir / "server.log").read_text()[-1500:])
            time.sleep(0.05)
        raise RuntimeError(f"{self.script.name}: server not healthy after 120 s")

    def __exit__(self, *exc):
        _kill_tree(self.proc.pid)
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()


def _first_render(browser, script: Path, ready, demo_rss: list | None = None, window_s: float = 0.0) -> float:
    """Seconds from starting the server to the frame in which ``ready(page)`` held, in a fresh browser context
    (fresh cache: a first visit)."""
    with tempfile.TemporaryDirectory(prefix="bench-ui-") as tmp, Server(script, Path(tmp)) as srv:
        ctx = browser.new_context(viewport={"width": 1400, "height": 1600})
        try:
            page = ctx.new_page()
            page.goto(srv.url)
            elapsed = ready(page) - srv.t0_wall
            if demo_rss is not None:
                demo_rss.append(_demo_peak_rss(page, srv.proc.pid, window_s))
        finally:
            ctx.close()
    return elapsed


# "Ready" is decided in the page at every animation frame and timed by the browser's clock (the machine's):
# Playwright's expect() polls at 0.1 / 0.25 / 0.5 / 1 s intervals, which added up to a second to either side
_VISIBLE = "(el) => !!el && el.checkVisibility() && el.getBoundingClientRect().height > 0"
_APP_READY = f"""() => {{
  const visible = {_VISIBLE};
  const nav = document.querySelector('[data-testid="stSidebarNav"]');
  const demo = [...document.querySelectorAll('button')].find(b => b.textContent.includes('Run the EMA vs WMA demo'));
  return visible(nav) && visible(demo) && Date.now() / 1000;
}}"""
_HELLO_READY = f"""() => {{
  const h1 = [...document.querySelectorAll('h1')].find(h => h.textContent.includes('Hello'));
  return ({_VISIBLE})(h1) && Date.now() / 1000;
}}"""


def _ready_at(page, predicate: str) -> float:
    """Wall-clock time of the first animation frame in which ``predicate`` held."""
    return float(page.wait_for_function(predicate, polling="raf", timeout=120_000).json_value())


def _app_ready(page) -> float:
    return _ready_at(page, _APP_READY)


def _hello_ready(page) -> float:
    return _ready_at(page, _HELLO_READY)


def _demo_peak_rss(page, server_pid: int, window_s: float) -> float:
    """Click the demo and sample the server's process tree (dashboard + job workers) for ``window_s``
    (0: no click, the tree's RSS right after the first render)."""
    if window_s > 0:
        page.get_by_role("button", name="Run the EMA vs WMA demo").click()
    peak, end = tree_rss_mb(server_pid), time.monotonic() + window_s
    while time.monotonic() < end:
        peak = max(peak, tree_rss_mb(server_pid))
        time.sleep(0.25)
    return peak


def first_render(quick: bool, device: str) -> list[Row]:
    from playwright.sync_api import sync_playwright
    if not Path(CHROMIUM).exists():
        raise RuntimeError(f"{CHROMIUM} not found (apt-get install chromium)")
    # 5 rounds: on the shared 2-core machine one server start varies by +-0.7 s between identical runs
    rounds, rss, window = (1 if quick else 5), [], (0.0 if quick else 45.0)
    with tempfile.TemporaryDirectory(prefix="bench-hello-") as tmp, sync_playwright() as p:
        hello = Path(tmp) / "hello.py"
        hello.write_text(HELLO)
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        try:
            # one unmeasured hello render first: the browser's first context (and the OS file cache of
            # Streamlit's static files) are warmed for both sides, not charged to whichever runs first
            _first_render(browser, hello, _hello_ready)
            state = {"n": 0}

            def app() -> float:
                state["n"] += 1
                last = state["n"] == rounds                      # the last app round also runs the demo
                return _first_render(browser, ROOT / "app.py", _app_ready, rss if last else None, window)
            t = interleave({"app": app, "hello": lambda: _first_render(browser, hello, _hello_ready)}, rounds)
        finally:
            browser.close()
    med, lo, hi = paired_ratio(t["app"], t["hello"])
    rows = [Row("server start → first rendered page (Chromium)", "bare Streamlit hello page",
                f"{spread(t['app'])[0]:.2f} s", f"{spread(t['hello'])[0]:.2f} s", med, lo, hi, "≤ 1.2× bare", 1.2,
                note=f"{rounds} rounds; page ready = app's nav + demo button visible")]
    how = (f"server process tree sampled for {window:.0f} s after clicking the demo (first run training)" if window
           else "--quick: server process tree after the first render, demo not clicked")
    rows.append(budget_row("dashboard + workers peak RSS during the demo", rss, 2048.0, "MB",
                           peer="report (bench budget 2 GB)", note=how))
    return rows


def click_to_first_point(quick: bool, device: str) -> list[Row]:
    from bench.bench_first_points import measure
    rows = [measure("warm", 0.05) for _ in range(1 if quick else 2)]
    return [budget_row("click → first live point (warm worker)", [r["first_point_s"] for r in rows], 10.0, "s",
                       peer="budget 10 s (W&B: seconds)",
                       note="JobRunner.submit(demo run 1) → first RunStore.series row; spare warmed first")]
