"""Hostile and broken inputs on the pages (issue 16 items 2, 5, 7): user text is shown as text, a run folder
whose config.json is missing or garbled breaks no page and stays deletable, the analysis caches are bounded.

One real tiny run (with a final checkpoint) is trained once; each test copies its folder into a fresh data
folder and plants the input there, so no test depends on another's leftovers.
"""
from __future__ import annotations

import json
import re
import shutil

import pytest
from streamlit.testing.v1 import AppTest

TINY = ["model.pretrained=none", "data.train_set=synthetic", 'data.eval_sets=["synthetic"]', "train.steps=4",
        "data.batch_size=8", "data.max_eval_samples=16", "train.eval_every=0", "optim.warmup_steps=1",
        "train.similarity_probe=0", "train.threads=1"]
PIXEL = "![x](http://127.0.0.1:9/pixel.png)"
NAME = f"{PIXEL} *bold* :red[red] <b>b</b>"
ERROR = f"RuntimeError: {PIXEL} [link](http://127.0.0.1:9/)"


def _shown(markdown: str) -> str:
    """What a Markdown element displays once CommonMark's backslash escapes are applied."""
    return re.sub(r"\\([!-/:-@\[-`{-~])", r"\1", markdown)


def _safe(markdown: str) -> bool:
    """No unescaped image, link, HTML tag, emphasis or directive left in the Markdown source."""
    unescaped = re.sub(r"\\.", "", markdown)
    return not re.search(r"!\[|\]\(|<[a-z/]|\*\w|:\w+\[|:material/", unescaped)


@pytest.fixture(scope="module")
def trained(tmp_path_factory, train_checkpointed):
    """A finished tracer run named NAME (a Markdown image, emphasis, a directive and HTML) with a checkpoint."""
    from tracer_core.config import load_preset

    data_dir = tmp_path_factory.mktemp("tracer-safety")
    (run_id,) = train_checkpointed(data_dir, [load_preset("tracer", [*TINY, f"name={json.dumps(NAME)}"])])
    return data_dir, run_id


def _copy(trained, tmp_path, name="data"):
    src, run_id = trained
    dst = tmp_path / name
    shutil.copytree(src / "runs", dst / "runs")
    for art in (dst / "runs" / run_id).glob("artifacts.jsonl"):   # checkpoint paths point into the copy
        art.write_text(art.read_text().replace(str(src / "runs"), str(dst / "runs")))
    return dst, run_id


def _texts(at: AppTest) -> list[str]:
    return [e.value for kind in ("error", "warning", "info", "caption", "success") for e in getattr(at, kind)]


def test_user_text_is_escaped_in_alerts_and_progress(trained, tmp_path, app_for, open_page):
    data_dir, run_id = _copy(trained, tmp_path)
    status = data_dir / "runs" / run_id / "status.json"
    st_json = json.loads(status.read_text())
    status.write_text(json.dumps({**st_json, "status": "failed", "error": ERROR}))
    at = open_page(app_for(data_dir, timeout=120), "views/dynamics.py", dynamics_runs=[run_id])
    warnings = [w.value for w in at.warning]
    hits = [w for w in warnings if "pixel.png" in w]
    assert hits, warnings
    assert all(_safe(w) for w in hits), hits
    assert NAME in _shown(hits[0]) and ERROR in _shown(hits[0]), hits[0]     # shown as typed, not rendered
    assert all(_safe(t) for t in _texts(at)), _texts(at)


def test_markdown_escape_keeps_plain_text_and_config_keys():
    import tracer_core.api as api

    assert api.md("optim.lr must be > 0; data.eval_sets: choose one") == \
        "optim.lr must be > 0; data.eval_sets\\: choose one"
    assert _shown(api.md(NAME)) == NAME and _safe(api.md(NAME))
    assert _shown(api.md("- 1. a\nb")) == "- 1. a b" and api.md("- x").startswith("\\-")


def test_chart_legends_and_report_escape_html(trained, tmp_path):
    import tracer_core.api as api
    import tracer_core.charts as charts

    data_dir, run_id = _copy(trained, tmp_path)
    svc = api.open_services(data_dir)
    try:
        frames = api.live_frames(svc, [run_id], [("teacher_student_kl", "combined")])
        fig = charts.series_figure(frames[("teacher_student_kl", "combined")], "teacher_student_kl", "combined")
        assert fig.data and all("<b>" not in t.name and "&lt;b&gt;" in t.name for t in fig.data)
        report = api.html_report(svc, [run_id])
        assert "<b>b</b>" not in report and "&lt;b&gt;b&lt;/b&gt;" in report
    finally:
        svc.close()


@pytest.mark.parametrize("damage", ["missing", "garbled", "not an object"])
def test_broken_config_json_breaks_no_page_and_the_run_stays_deletable(trained, tmp_path, app_for, open_page,
                                                                       damage):
    data_dir, run_id = _copy(trained, tmp_path)
    cfg = data_dir / "runs" / run_id / "config.json"
    if damage == "missing":
        cfg.unlink()
    else:
        cfg.write_text('{"config": {"data": ' if damage == "garbled" else '["a list"]')
    before = sorted(p.name for p in (data_dir / "runs").iterdir())
    at = app_for(data_dir, timeout=180)
    for page in ("views/runs.py", "views/dynamics.py", "views/attributions.py", "views/robustness.py",
                 "views/calibration.py", "views/home.py"):
        open_page(at, page)
        assert not at.error, (page, [e.value for e in at.error])
    assert sorted(p.name for p in (data_dir / "runs").iterdir()) == before       # looking changed nothing
    open_page(at, "views/runs.py")
    table = at.dataframe[0].value
    row = table.set_index("run_id").loc[run_id]
    assert row["status"] == "incompatible", row.to_dict()       # shown as broken, not as a finished run
    notes = [_shown(w.value) for w in at.warning if run_id in _shown(w.value)]
    assert notes and "config.json" in notes[0] and "delete" in notes[0], [w.value for w in at.warning]
    at.multiselect(key="runs_selected").set_value([run_id]).run()
    at.button(key="runs_delete").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert not (data_dir / "runs" / run_id).exists()


def test_checkpoint_cache_is_bounded(trained, tmp_path):
    import tracer_core.api as api
    from tracer_core.api import checkpoints

    data_dir, run_id = _copy(trained, tmp_path)
    svc = api.open_services(data_dir)
    try:
        path = next(iter(api.checkpoint_choices(svc, run_id)))
    finally:
        svc.close()
    copies = []
    for i in range(4):      # four distinct checkpoint files
        copies.append(tmp_path / f"copy{i}.pt")
        shutil.copy(path, copies[-1])
    for c in copies:
        api.load_checkpoint_models(str(c))
    assert 1 <= len(checkpoints._LOADED) <= checkpoints.MAX_LOADED
    assert str(copies[-1]) in {k[0] for k in checkpoints._LOADED}
