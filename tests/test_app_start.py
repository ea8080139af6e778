"""A fresh server's first page (issue 17): the services open on first use, the spare worker warms up after the
page was sent, and what app.py moved after the page (sidebar path, job counter, store notices, the open error)
still shows (Home: its sidebar status after it). Timing is the bench's job (`python -m bench --only first_render`); these check behaviour."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import tracer_core.api as api
from tracer_core.store import schema

ROOT = Path(__file__).resolve().parents[1]


def _run(at, page: str | None = None):
    at.run()
    if page:
        at.switch_page(page)
        at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def test_deferred_services_open_on_first_use(tmp_path, monkeypatch):
    monkeypatch.delenv("TRACER_WARM_WORKER", raising=False)
    svc = api.open_services(tmp_path, defer=True)
    try:
        assert not schema.store_path(tmp_path).exists()          # nothing opened yet: no DuckDB file
        assert svc.runner.warm is False                           # the spare waits for the first page
        assert not schema.store_path(tmp_path).exists()           # the runner does not open the store
        assert svc.store.list_runs().empty and schema.store_path(tmp_path).exists()
        svc.release_warm()
        assert svc.runner.warm is True
    finally:
        svc.close()


def test_release_keeps_warm_starts_off_when_the_environment_says_so(tmp_path, monkeypatch):
    monkeypatch.setenv("TRACER_WARM_WORKER", "0")
    svc = api.open_services(tmp_path, defer=True)
    try:
        svc.release_warm()
        assert svc.runner.warm is False
    finally:
        svc.close()


def test_sidebar_is_whole_after_a_page_that_stops(tmp_path, app_for):
    """A page that calls st.stop() gets the sidebar's path, notices and job counter before it runs."""
    at = _run(app_for(tmp_path), "views/dynamics.py")            # no runs: the page stops after its notice
    assert any("No runs" in i.value for i in at.info)
    assert str(tmp_path) in [c.value for c in at.code]
    assert any(m.label == "Running jobs" and m.value == "0" for m in at.metric)


def test_an_unusable_data_folder_is_reported_with_the_page_drawn(tmp_path, app_for):
    (tmp_path / "afile").write_text("not a folder")
    bad = tmp_path / "afile" / "data"
    at = _run(app_for(bad))
    errors = [e.value for e in at.error]
    assert errors and "Could not open the run store" in errors[0] and "TRACER_DATA_DIR" in errors[0], errors
    assert at.button(key="demo_button").label.startswith("Run the EMA vs WMA demo")   # the static part drew
    assert str(bad) in [c.value for c in at.code]


def test_api_import_leaves_the_store_and_the_job_runner_to_first_use():
    """What the first script run of app.py pays for before the page draws: not the store (indexer, queries,
    exports) nor the job runner (subprocess supervision); StoreError comes from tracer_core.store.errors."""
    code = ("import sys, tracer_core.api as api; "
            "bad = [m for m in ('tracer_core.store.runstore', 'tracer_core.jobs.runner') if m in sys.modules]; "
            "from tracer_core.store.runstore import StoreError; assert api.StoreError is StoreError; "
            "print(bad); sys.exit(1 if bad else 0)")
    res = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr
