"""Every dashboard page under Streamlit's AppTest, against a store seeded by REAL short training runs.

The session fixture trains four tiny runs in-process (``tracer_core.training.run`` + the store's RunWriter;
random-init tiny model, synthetic data, 12 steps): FT, TRACER with an EMA teacher, and TRACER with a WMA
teacher for two seeds (a seed group). AppTest never performs ``run_every`` reruns, so "live" behaviour is
checked by calling ``at.run()`` again after more rows were written (``tests/test_browser.py`` checks the real
timer in Chromium). ``st.cache_resource`` is process-wide: every test clears it, which closes the services.
"""
from __future__ import annotations

import json
import shlex
import time

import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

PAGES = ["views/home.py", "views/launch.py", "views/dynamics.py", "views/kernel.py", "views/runs.py", "views/frontier.py"]
TINY = ["model.pretrained=none", "data.train_set=synthetic", 'data.eval_sets=["synthetic"]', "train.steps=12",
        "data.batch_size=16", "data.max_eval_samples=64", "train.eval_every=6", "optim.warmup_steps=3",
        "train.threads=1"]   # one torch thread: robust to a busy 2-core machine
SEEDED = [("ft", 0), ("tracer_ema", 0), ("tracer", 0), ("tracer", 1)]


@pytest.fixture(scope="session")
def seeded(tmp_path_factory):
    """(data_dir, {(preset, seed): run_id}) with four finished real runs."""
    from tracer_core.config import load_preset
    from tracer_core.store.writer import RunWriter
    from tracer_core.training import run

    import torch

    data_dir = tmp_path_factory.mktemp("tracer-data")
    ids, threads = {}, torch.get_num_threads()
    try:
        for preset, seed in SEEDED:
            cfg = load_preset(preset, [*TINY, f"train.seed={seed}"])
            writer = RunWriter.create(cfg, data_dir)
            assert run(cfg, writer).status == "done"
            ids[(preset, seed)] = writer.run_id
    finally:
        torch.set_num_threads(threads)     # train.threads=1 is process-wide: give the suite its setting back
    return data_dir, ids


@pytest.fixture
def app(seeded, app_for):
    return app_for(seeded[0])


def _open(at: AppTest, page: str | None = None, **state) -> AppTest:
    for k, v in state.items():
        at.session_state[k] = v
    if page:
        if "svc" not in at.session_state:
            at.run()       # app.py must run first: it calls st.navigation (else AppTest runs the bare page)
        at.switch_page(page)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def _figures(at: AppTest) -> list[dict]:
    return [json.loads(el.proto.spec) for el in at.get("plotly_chart")]


def _by_title(figs: list[dict], text: str) -> dict:
    hits = [f for f in figs if text in f["layout"]["title"]["text"]]
    assert hits, f"no chart titled {text!r} in {[f['layout']['title']['text'] for f in figs]}"
    return hits[0]


def _assert_labelled(fig: dict) -> None:
    lay = fig["layout"]
    assert lay["title"]["text"] and lay["showlegend"] is True
    assert lay["xaxis"]["title"]["text"] and lay["yaxis"]["title"]["text"]
    assert "(" in lay["yaxis"]["title"]["text"], "y axis title must name a unit (or 'unitless')"


def _points(trace: dict) -> int:
    return len(trace.get("x") or [])


# -- every page ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("page", PAGES)
def test_every_page_opens_without_error(app, page):
    _open(app, page)
    assert not app.error, [e.value for e in app.error]
    assert app.title, "every page has a title"


def test_home_has_demo_button_and_counts(app):
    _open(app)
    assert app.button(key="demo_button").label.startswith("Run the EMA vs WMA demo")
    assert any(m.label == "Runs in store" and m.value == str(len(SEEDED)) for m in app.metric)
    assert "collapses" in app.markdown[0].value and "persists" in app.markdown[0].value


def test_empty_store_explains_what_to_do(tmp_path, app_for):
    at = app_for(tmp_path / "empty")
    try:
        for page in (None, "views/dynamics.py", "views/runs.py"):
            _open(at, page)
            assert any("No runs" in i.value for i in at.info), [i.value for i in at.info]
            assert not at.get("plotly_chart")
    finally:
        st.cache_resource.clear()


# -- live dynamics ------------------------------------------------------------------------------------------

def test_dynamics_overlays_runs_with_labelled_charts(app, seeded):
    ids = list(seeded[1].values())
    _open(app, "views/dynamics.py", dynamics_runs=ids)
    figs = _figures(app)
    assert len(figs) >= 9                              # 6 teacher statistics + loss + lr + evaluations
    for fig in figs:
        _assert_labelled(fig)
        assert any(_points(t) > 0 for t in fig["data"]), fig["layout"]["title"]["text"]
    kl = _by_title(figs, "KL(teacher || student)")
    strategies = {t["meta"]["strategy"] for t in kl["data"] if t.get("meta")}
    assert strategies == {"TRACER (EMA teacher)", "TRACER (WMA teacher)"}   # FT has no teacher: not in KL
    assert all(_points(t) >= 10 for t in kl["data"])   # steps 1..11 (no distillation at step 0)
    ema = next(t for t in kl["data"] if t.get("meta", {}).get("strategy") == "TRACER (EMA teacher)")
    wma = next(t for t in kl["data"] if t.get("meta", {}).get("strategy") == "TRACER (WMA teacher)")
    assert ema["line"]["color"] != wma["line"]["color"]
    loss = _by_title(figs, "Loss")
    assert len({t["meta"]["run_id"] for t in loss["data"] if t.get("meta")}) == len(ids)
    ev = _by_title(figs, "Accuracy on the evaluation sets")
    assert all(_points(t) >= 2 for t in ev["data"])    # step 0, 6 and the final evaluation
    table = app.dataframe[0].value
    assert len(table) == len(ids) and "KL AUC (normalised)" in table.columns


def test_smoothing_keeps_raw_trace_faint(app, seeded):
    ids = [seeded[1][("tracer", 0)]]
    _open(app, "views/dynamics.py", dynamics_runs=ids)
    app.slider(key="dyn_smoothing").set_value(0.9).run()
    kl = _by_title(_figures(app), "KL(teacher || student)")
    raw = [t for t in kl["data"] if t["name"].endswith("(raw)")]
    smooth = [t for t in kl["data"] if not t["name"].endswith("(raw)")]
    assert raw and smooth and raw[0]["opacity"] < 0.5
    assert raw[0]["y"] != smooth[0]["y"] and raw[0]["x"] == smooth[0]["x"]
    app.slider(key="dyn_smoothing").set_value(0.0).run()
    assert not [t for t in _by_title(_figures(app), "KL").get("data") if t["name"].endswith("(raw)")]


def test_log_scale_toggle_and_seed_bands(app, seeded):
    ids = [seeded[1][("tracer", 0)], seeded[1][("tracer", 1)], seeded[1][("tracer_ema", 0)]]
    _open(app, "views/dynamics.py", dynamics_runs=ids)
    assert _by_title(_figures(app), "Teacher entropy")["layout"]["yaxis"]["type"] == "linear"
    app.toggle(key="dyn_log").set_value(True).run()
    assert _by_title(_figures(app), "Teacher entropy")["layout"]["yaxis"]["type"] == "log"
    app.toggle(key="dyn_log").set_value(False)
    app.toggle(key="dyn_groups").set_value(True).run()
    assert not app.exception
    band = _by_title(_figures(app), "mean over seeds")
    lines = [t for t in band["data"] if t.get("meta")]
    assert any("(n=2)" in t["name"] for t in lines)    # the two TRACER seeds form one group
    assert any(t.get("fill") == "toself" for t in band["data"])


def test_live_view_updates_a_running_run(tmp_path, app_for):
    """A run still writing: progress is shown and a rerun (what run_every triggers) shows the new points."""
    from tracer_core.config import load_preset
    from tracer_core.store.writer import RunWriter

    at = app_for(tmp_path / "live")
    cfg = load_preset("tracer", TINY)
    with RunWriter.create(cfg, tmp_path / "live", flush_s=0.05) as writer:
        writer.on_start(type("Info", (), {"total_steps": 12, "versions": {}})())
        for step in range(1, 4):
            writer.on_step(step, {("teacher_student_kl", "combined"): 0.1 / step, ("loss", "total"): 1.0})
        time.sleep(0.3)                                  # the writer flushes every 0.05 s
        _open(at, "views/dynamics.py", dynamics_runs=[writer.run_id])
        assert at.get("progress") and "step" in at.get("progress")[0].proto.text
        before = sum(_points(t) for t in _by_title(_figures(at), "KL(teacher").get("data"))
        for step in range(4, 9):
            writer.on_step(step, {("teacher_student_kl", "combined"): 0.1 / step, ("loss", "total"): 1.0})
        time.sleep(0.6)                                  # flushed, and the store re-reads at most every 0.5 s
        at.run()
        after = sum(_points(t) for t in _by_title(_figures(at), "KL(teacher").get("data"))
        assert after > before
    st.cache_resource.clear()


# -- kernel explorer ----------------------------------------------------------------------------------------

def test_kernel_explorer_plots_ema_and_wma(app):
    _open(app, "views/kernel.py")
    figs = _figures(app)
    assert len(figs) == 3
    for fig in figs:
        _assert_labelled(fig)
        assert {t["name"] for t in fig["data"]} == {"EMA teacher", "WMA teacher"}
        assert all(_points(t) > 0 for t in fig["data"])
    app.number_input(key="k_beta").set_value(2.0)
    app.number_input(key="k_total").set_value(2000).run()
    assert not app.exception and len(_figures(app)) == 3
    assert len(app.dataframe[0].value) == 2


# -- launch -------------------------------------------------------------------------------------------------

def _launch(app, **values) -> AppTest:
    _open(app, "views/launch.py")
    preset = app.selectbox(key="launch_preset").value
    for field, value in values.items():
        app.get_by_key(f"l_{preset}_{field}").set_value(value)
    app.button(key="FormSubmitter:launch_form-Launch").click().run()
    assert not app.exception
    return app


@pytest.mark.parametrize("values, message", [
    ({"lr": 0.0}, "optim.lr must be > 0"),
    ({"beta": 0.0}, "teacher.beta must be > 0"),
    ({"teacher": "none"}, "needs a teacher"),
    ({"sweep_seeds": "0, x"}, "'x' is not a valid int"),
    ({"extra": "optim.lrr=0.1"}, "did you mean optim.lr"),
])
def test_launch_form_rejects_bad_values_with_a_message(app, seeded, values, message):
    before = len(list((seeded[0] / "runs").iterdir()))
    _launch(app, **values)
    errors = [e.value for e in app.error]
    assert any(message in e for e in errors), errors
    assert len(list((seeded[0] / "runs").iterdir())) == before    # nothing was queued


def test_launch_double_submit_queues_one_run(tmp_path, app_for):
    at = app_for(tmp_path / "launch")
    try:
        extra = "\n".join(TINY + ["train.steps=2", "train.eval_at_start=false"])
        _launch(at, extra=extra, steps=2)
        at.button(key="FormSubmitter:launch_form-Launch").click().run()   # the second click of a double click
        assert any("Queued 1 run" in s.value for s in at.success)
        runs = [p for p in (tmp_path / "launch" / "runs").iterdir() if not p.name.startswith(".")]
        assert len(runs) == 1
        svc = at.session_state["svc"]
        svc.runner.cancel(runs[0].name)
        assert svc.runner.wait(runs[0].name, timeout=120).status in ("done", "cancelled")
    finally:
        st.cache_resource.clear()


# -- runs ---------------------------------------------------------------------------------------------------

def test_runs_table_filter_diff_and_export(app, seeded):
    _open(app, "views/runs.py")
    table = app.dataframe[0].value
    assert len(table) == len(SEEDED)
    assert {"status", "strategy", "seed", "tags", "ID accuracy", "KL AUC (normalised)"} <= set(table.columns)
    app.multiselect(key="runs_teacher").set_value(["wma"]).run()
    assert set(app.dataframe[0].value["strategy"]) == {"TRACER (WMA teacher)"}
    app.multiselect(key="runs_teacher").set_value([]).run()
    ema, wma = seeded[1][("tracer_ema", 0)], seeded[1][("tracer", 0)]
    app.multiselect(key="runs_selected").set_value([ema, wma]).run()
    diff = app.dataframe[1].value                      # [0] is the runs table
    assert "teacher.kind" in diff.index and "train.steps" not in diff.index     # diff only
    assert {b.key for b in app.get("download_button")} >= {"runs_csv", "runs_parquet", "runs_report"}
    # the command lines rebuild each selected run's config; torchrun form on request
    from tracer_core.cli import build_parser
    from tracer_core.config import load_preset
    code = app.code[0].value
    assert code.count("python -m tracer_core train --preset") == 2
    want = load_preset("tracer_ema", [*TINY, "train.seed=0"])             # how the fixture made that run
    command = code.split("\n\n")[0].split("\n", 1)[1]                     # first run, after its "# label" line
    args = build_parser().parse_args(shlex.split(command.replace("\\\n", " "))[3:])
    assert load_preset(args.preset, args.set) == want
    app.number_input(key="runs_nproc").set_value(4).run()
    assert app.code[0].value.count("torchrun --nproc_per_node=4 -m tracer_core train") == 2


def test_runs_rename_tag_and_delete(app, seeded):
    from tracer_core.config import load_preset
    from tracer_core.store.writer import RunWriter

    with RunWriter.create(load_preset("ft", TINY), seeded[0]) as extra:   # a run to edit and delete
        pass
    _open(app, "views/runs.py")
    app.multiselect(key="runs_selected").set_value([extra.run_id]).run()
    app.text_input(key="runs_new_name").set_value("renamed-run")
    app.text_input(key="runs_new_tags").set_value("keep, ablation")
    app.button(key="runs_save").click().run()
    assert not app.exception
    app.multiselect(key="runs_tags").set_value(["ablation"]).run()
    table = app.dataframe[0].value
    assert list(table["label"]) == ["renamed-run"] and "keep" in table["tags"].iloc[0]
    app.multiselect(key="runs_tags").set_value([]).run()
    app.multiselect(key="runs_selected").set_value([extra.run_id]).run()
    app.button(key="runs_delete").click().run()
    assert not app.exception and not (seeded[0] / "runs" / extra.run_id).exists()
    assert len(app.dataframe[0].value) == len(SEEDED)


def test_exports_and_html_report_are_self_contained(seeded):
    import io
    import zipfile

    from tracer_core import api

    svc = api.open_services(seeded[0])
    try:
        ids = list(seeded[1].values())
        names = zipfile.ZipFile(io.BytesIO(api.export_zip(svc, ids, "csv"))).namelist()
        assert {"runs.csv", "series.csv", "evaluations.csv"} <= set(names)
        assert "series.parquet" in zipfile.ZipFile(io.BytesIO(api.export_zip(svc, ids, "parquet"))).namelist()
        html = api.html_report(svc, ids)
        assert html.count("Plotly.newPlot") >= 5 and "<script src=" not in html    # plotly.js inlined
        assert "KL AUC (normalised)" in html and "teacher.kind" in html
    finally:
        svc.close()


# -- the computations behind the pages ------------------------------------------------------------------------

def test_smoothing_is_debiased_ema():
    from tracer_core import charts

    assert charts.smooth([5.0, 5.0, 5.0], 0.9).tolist() == pytest.approx([5.0, 5.0, 5.0])   # no pull towards 0
    out = charts.smooth([1.0, float("nan"), 3.0], 0.5)
    assert out[0] == 1.0 and out[1] != out[1] and out[2] == pytest.approx((0.25 * 1 + 0.5 * 3) / 0.75)
    assert charts.smooth([1.0, 2.0], 0.0).tolist() == [1.0, 2.0]


def test_kernel_view_matches_the_teacher_schedules():
    from tracer_core import api
    from tracer_core.teachers.schedules import snapshot_weights, update_weights

    kv = api.kernel_view(300, 299, beta=0.5)
    for kind in ("EMA", "WMA"):
        w = kv.weights[kv.weights["teacher"] == kind]["weight"]
        assert w.sum() == pytest.approx(1.0)
    wma = kv.weights[kv.weights["teacher"] == "WMA"]["weight"].to_numpy()
    assert wma == pytest.approx(snapshot_weights(update_weights("wma", 300, beta=0.5), 299))
    lag = kv.summary["lag at end (steps)"]
    assert lag["WMA"] == pytest.approx(150, abs=1) and lag["EMA"] < 15     # WMA centred at T/2; EMA collapses
    big = api.kernel_view(20_000, 19_999)
    assert big.bin_width > 1 and len(big.weights) <= 2 * 400
    with pytest.raises(api.ConfigError):
        api.kernel_view(100, 10, beta=0)


def test_sweep_makes_one_config_per_combination():
    from tracer_core import api

    base = api.build_config("tracer", {"name": "sw"}, "\n".join(TINY))
    cfgs = api.sweep_configs(base, [0, 1], [0.2, 0.5], [0.9])
    assert len(cfgs) == 4 and len({c.name for c in cfgs}) == 4
    assert {(c.train.seed, c.teacher.beta) for c in cfgs} == {(0, 0.2), (0, 0.5), (1, 0.2), (1, 0.5)}
    with pytest.raises(api.ConfigError, match="at most"):
        api.sweep_configs(base, range(10), [0.1] * 10)
