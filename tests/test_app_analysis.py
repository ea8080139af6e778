"""The analysis pages (calibration, representations, attributions, robustness) under AppTest, against a store
seeded by REAL short training runs *with checkpoints*.

The session fixture trains three tiny runs in-process (random-init tiny model, synthetic data, 12 steps,
evaluations at steps 0, 6 and 12 on the synthetic set and one OOD set): TRACER with an EMA teacher, TRACER
with a WMA teacher and plain FT (no teacher, a trained linear head). Unlike tests/test_app.py they run with
``output_dir=<run folder>``, as dashboard and CLI runs do, so each saves its final checkpoint (an artifact).
"""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

PAGES = ["views/calibration.py", "views/representations.py", "views/attributions.py", "views/robustness.py"]
TINY = ["model.pretrained=none", "data.train_set=synthetic", 'data.eval_sets=["synthetic","sklearn_digits"]',
        "train.steps=12", "data.batch_size=16", "data.max_eval_samples=48", "train.eval_every=6",
        "optim.warmup_steps=3", "train.similarity_probe=16", "train.threads=1"]
SEEDED = ("tracer_ema", "tracer", "ft")


@pytest.fixture(scope="module")
def seeded(tmp_path_factory, train_checkpointed):
    """(data_dir, {preset: run_id}) with three finished runs, each with a final checkpoint."""
    from tracer_core.config import load_preset

    data_dir = tmp_path_factory.mktemp("tracer-analysis")
    ids = train_checkpointed(data_dir, [load_preset(preset, TINY) for preset in SEEDED])
    return data_dir, dict(zip(SEEDED, ids))


@pytest.fixture
def app(seeded, app_for):
    return app_for(seeded[0], timeout=240)


def _ok(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]


def _fig(at: AppTest, key: str) -> dict:
    figs = {el.key: json.loads(el.proto.spec) for el in at.get("plotly_chart")}
    assert key in figs, f"no chart {key!r}: {list(figs)}"
    return figs[key]


def _labelled(fig: dict) -> None:
    lay = fig["layout"]
    assert lay["title"]["text"] and lay["xaxis"]["title"]["text"] and lay["yaxis"]["title"]["text"]
    assert "(" in lay["yaxis"]["title"]["text"], "the y axis names a unit"


# -- every page ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("page", PAGES)
def test_analysis_pages_open_without_error(app, page, open_page):
    _ok(open_page(app, page))
    assert app.title
    assert app.get("plotly_chart") or app.get("button"), "a chart, or a button that computes one"


def test_empty_store_explains_what_to_do(tmp_path, app_for, open_page):
    at = app_for(tmp_path / "empty")
    try:
        for page, words in zip(PAGES, ("No evaluations yet", "No representation similarities", "No checkpoint",
                                       "No checkpoint")):
            _ok(open_page(at, page))
            assert any(words in i.value for i in at.info), [i.value for i in at.info]
            assert not at.get("plotly_chart")
    finally:
        st.cache_resource.clear()


# -- calibration -------------------------------------------------------------------------------------------------

def test_calibration_diagrams_table_and_step_slider(app, seeded, open_page):
    ids = seeded[1]
    runs = [ids["tracer_ema"], ids["tracer"], ids["ft"]]
    _ok(open_page(app, "views/calibration.py", cal_runs=runs))
    assert app.selectbox(key="cal_set").options[0] == "synthetic"       # the ID set first
    assert app.select_slider(key="cal_step").options == ["0", "6", "12"]
    rel = _fig(app, "cal_reliability")
    _labelled(rel)
    assert any(t["name"] == "perfect calibration" and t["x"] == [0, 1] for t in rel["data"])
    curves = [t for t in rel["data"] if t.get("meta")]
    assert {t["meta"]["run_id"] for t in curves} == set(runs)
    assert {(t["meta"]["run_id"], t["meta"]["model"]) for t in curves if t["meta"]["model"] == "teacher"} == \
        {(ids["tracer_ema"], "teacher"), (ids["tracer"], "teacher")}      # FT has no teacher
    assert all(len(t["x"]) >= 1 and all(0 <= v <= 1 for v in t["x"] + t["y"]) for t in curves)
    hist = _fig(app, "cal_hist")
    for rid in runs:   # 48 images per set; the confidence == 1.0 bin is folded into the last one: 10 bars
        bars = [t for t in hist["data"] if t["meta"] == {"run_id": rid, "model": "student"}]
        assert len(bars[0]["x"]) == 10 and sum(bars[0]["y"]) == 48
    table = app.dataframe[0].value
    assert {"ECE", "per-batch ECE (reference protocol)", "MCE", "NLL (nats)", "Brier"} <= set(table.columns)
    assert set(table["model"]) == {"student", "teacher"} and set(table["eval set"]) == {"synthetic", "sklearn_digits"}
    assert len(table) == 2 * 3 + 2 * 2 and (table["step"] == 12).all()
    assert _fig(app, "cal_trend")["data"]

    app.select_slider(key="cal_step").set_value("6").run()
    _ok(app)
    rel = _fig(app, "cal_reliability")
    assert all(a["text"].endswith("step 6") for a in rel["layout"]["annotations"] if "step" in a["text"])
    assert not [t for t in rel["data"] if t.get("meta", {}).get("model") == "teacher"]   # teachers: final step only
    assert set(app.dataframe[0].value["model"]) == {"student"}
    app.toggle(key="cal_teacher").set_value(False)
    app.selectbox(key="cal_set").set_value("sklearn_digits").run()
    _ok(app)
    assert "sklearn_digits" in _fig(app, "cal_reliability")["layout"]["title"]["text"]


def test_fold_top_bin_is_count_weighted():
    from tracer_core import api

    bins = pd.DataFrame({"bin": [0, 1, 2], "lo": [0.0, 0.5, 1.0], "hi": [0.5, 1.0, 1.0], "count": [2.0, 3.0, 1.0],
                         "mean_confidence": [0.4, 0.8, 1.0], "accuracy": [0.5, 2 / 3, 1.0]})
    out = api.fold_top_bin(bins)
    assert out["bin"].tolist() == [0, 1] and out["count"].tolist() == [2.0, 4.0]
    assert out["mean_confidence"].iloc[1] == pytest.approx((3 * 0.8 + 1.0) / 4)
    assert out["accuracy"].iloc[1] == pytest.approx(3 / 4)
    empty_top = bins.assign(count=[2.0, 3.0, 0.0], accuracy=[0.5, 2 / 3, np.nan])
    assert api.fold_top_bin(empty_top)["accuracy"].iloc[1] == pytest.approx(2 / 3)


# -- representations -----------------------------------------------------------------------------------------------

def test_representations_heatmap_and_layer_curves_ema_vs_wma(app, seeded, open_page):
    ema, wma = seeded[1]["tracer_ema"], seeded[1]["tracer"]
    _ok(open_page(app, "views/representations.py"))
    assert app.multiselect(key="rep_runs").value == [ema, wma]           # default: EMA and WMA side by side
    heat = _fig(app, "rep_heatmap")
    _labelled(heat)
    maps = [t for t in heat["data"] if t.get("meta")]
    assert {t["meta"]["run_id"] for t in maps} == {ema, wma}
    for t in maps:
        assert t["x"] == [0, 6, 12] and len(t["y"]) >= 5 and len(t["z"]) == len(t["y"])
        assert all(v is not None for row in t["z"] for v in row)
    assert [t["z"][0][0] for t in maps] == pytest.approx([1.0, 1.0])   # step 0: the student is the pretrained model
    curves = _fig(app, "rep_layers")
    _labelled(curves)
    assert {(t["meta"]["run_id"], t["meta"]["pair"]) for t in curves["data"]} == {
        (r, p) for r in (ema, wma) for p in ("student_vs_pretrained", "student_vs_teacher", "teacher_vs_pretrained")}
    app.select_slider(key="rep_step").set_value("6")
    app.segmented_control(key="rep_kind").set_value("svcca")
    app.radio(key="rep_tower").set_value("text").run()
    _ok(app)
    assert "SVCCA per layer at step 6 (text tower)" in _fig(app, "rep_layers")["layout"]["title"]["text"]
    app.multiselect(key="rep_runs").set_value([seeded[1]["ft"]])
    app.selectbox(key="rep_pair").set_value("student_vs_teacher").run()
    _ok(app)
    assert any("no teacher" in i.value for i in app.info)


# -- attributions -------------------------------------------------------------------------------------------------

def test_attributions_compute_overlays_for_three_models(app, seeded, open_page):
    ema = seeded[1]["tracer_ema"]
    _ok(open_page(app, "views/attributions.py", attr_run=ema))
    assert app.selectbox(key="attr_ckpt").value.endswith("step_000012.safetensors")
    assert app.selectbox(key="attr_set").options == ["synthetic", "sklearn_digits"]
    assert not app.get("plotly_chart") and any("Compute attributions" in i.value for i in app.info)
    app.number_input(key="attr_index").set_value(5)
    app.slider(key="attr_ig_steps").set_value(4)
    app.button(key="attr_compute").click().run()
    _ok(app)
    fig = _fig(app, "attr_figure")
    heat = [t for t in fig["data"] if t["type"] == "heatmap"]
    assert {(t["meta"]["role"], t["meta"]["method"]) for t in heat} == {
        (r, m) for r in ("pretrained", "student", "teacher")
        for m in ("integrated_gradients", "saliency", "occlusion", "gradcam")}
    for t in heat:
        z = np.array(t["z"], dtype=float)
        assert z.shape == (28, 28) and z.min() >= 0 and z.max() == pytest.approx(1.0)
    assert sum(t["type"] == "image" for t in fig["data"]) == 12
    preds = app.dataframe[0].value
    assert list(preds["model"]) == ["Pretrained θ₀", "Student", "Teacher (EMA)"]
    app.selectbox(key="attr_class").set_value(2).run()               # another class: press the button again
    assert not app.get("plotly_chart")


def test_attributions_without_teacher(app, seeded, open_page):
    _ok(open_page(app, "views/attributions.py", attr_run=seeded[1]["ft"]))
    assert any("no teacher" in c.value for c in app.caption)
    app.multiselect(key="attr_methods").set_value(["saliency"])
    app.button(key="attr_compute").click().run()
    _ok(app)
    heat = [t for t in _fig(app, "attr_figure")["data"] if t["type"] == "heatmap"]
    assert {t["meta"]["role"] for t in heat} == {"pretrained", "student"}


# -- robustness ---------------------------------------------------------------------------------------------------

def test_robustness_attacks_and_wise_curve(app, seeded, open_page):
    wma = seeded[1]["tracer"]
    _ok(open_page(app, "views/robustness.py", rob_run=wma))
    assert app.slider(key="rob_eps").value == 4.0 and app.number_input(key="rob_steps").value == 5
    app.number_input(key="rob_n").set_value(16)
    app.button(key="rob_compute").click().run()
    _ok(app)
    fig = _fig(app, "rob_figure")
    _labelled(fig)
    acc = {t["meta"]["attack"]: dict(zip(t["x"], t["y"])) for t in fig["data"]}
    assert set(acc) == {"clean", "FGSM", "PGD"}
    assert set(acc["clean"]) == {"Pretrained θ₀", "Student", "Teacher (WMA)"}
    for attack in ("FGSM", "PGD"):
        assert all(0 <= acc[attack][m] <= acc["clean"][m] <= 1 for m in acc["clean"])
    assert "4/255" in fig["layout"]["title"]["text"] and "n = 16" in fig["layout"]["title"]["text"]

    assert app.multiselect(key="rob_ood").value == ["sklearn_digits"]
    app.number_input(key="rob_alphas").set_value(3)
    app.number_input(key="rob_wise_n").set_value(16)
    app.button(key="rob_wise_compute").click().run()
    _ok(app)
    wise = _fig(app, "rob_wise")
    _labelled(wise)
    curve = wise["data"][0]
    assert curve["text"] == ["α=0", "α=0.5", "α=1"] and all(0 <= v <= 1 for v in curve["x"] + curve["y"])
    assert {t["name"] for t in wise["data"][1:]} == {"pretrained θ₀ (α = 0)", "fine-tuned (α = 1)"}
    per_set = _fig(app, "rob_wise_alpha")
    assert {t["name"] for t in per_set["data"]} == {"synthetic (ID)", "sklearn_digits (OOD)"}


def test_wise_curve_endpoints_are_the_two_models(seeded):
    """α = 0 evaluates the pretrained model, α = 1 the fine-tuned student (FT: its trained head on the ID set)."""
    from tracer_core import api

    svc = api.open_services(seeded[0])
    try:
        run_id = seeded[1]["ft"]
        path = api.checkpoints_for_run(svc, run_id)["path"].iloc[0]
        cm = api.load_checkpoint_models(path)
        summary, rows = api.wise_curve_frame(cm, "synthetic", ["sklearn_digits"], [0.0, 1.0], max_samples=48)
        final = svc.store.evaluations([run_id], metrics=["accuracy"])
        final = final[final["step"] == 12].set_index("dataset")["value"]
        start = svc.store.evaluations([run_id], metrics=["accuracy"])
        start = start[start["step"] == 0].set_index("dataset")["value"]
        assert summary["id_accuracy"].tolist() == pytest.approx([start["synthetic"], final["synthetic"]])
        assert summary["ood_accuracy"].tolist() == pytest.approx([start["sklearn_digits"], final["sklearn_digits"]])
        assert len(rows) == 4 and set(rows["split"]) == {"id", "ood"}
    finally:
        svc.close()


# -- run and checkpoint pickers (pure helpers the pages share) ----------------------------------------------------

def test_run_and_checkpoint_choices(tmp_path):
    """Labels as the pickers show them, and only checkpoint files that still exist, newest first."""
    from tracer_core import api
    from tracer_core.config import RunConfig, TeacherConfig
    from tracer_core.store.writer import RunWriter

    data_dir, ckpt_dir = tmp_path / "data", tmp_path / "ckpts"
    ckpt_dir.mkdir()
    kept = {s: ckpt_dir / f"step_{s:06d}.pt" for s in (4, 12)}
    for p in kept.values():
        p.write_bytes(b"x")
    with RunWriter.create(RunConfig(name="alpha", method="tracer", teacher=TeacherConfig(kind="ema")), data_dir) as w:
        w.on_checkpoint(4, str(kept[4]))
        w.on_checkpoint(8, str(ckpt_dir / "step_000008.pt"))       # recorded, but the file is gone
        w.on_checkpoint(12, str(kept[12]))
    alpha = w.run_id
    failed = RunWriter.create(RunConfig(name="beta", method="ft"), data_dir)
    failed.close("failed", "boom")
    svc = api.open_services(data_dir)
    try:
        runs = api.runs_table(svc, with_results=False)
        choices = api.run_choices(runs)
        assert list(choices) == runs["run_id"].tolist()                # the frame's order
        assert choices == {alpha: "alpha — TRACER (EMA teacher)", failed.run_id: "beta — FT"}
        assert api.run_choices(runs, with_status=True) == {alpha: "alpha — TRACER (EMA teacher) (done)",
                                                           failed.run_id: "beta — FT (failed)"}
        assert api.run_choices(runs.iloc[:0]) == {}
        assert api.analysis_runs(svc, "checkpoint")["run_id"].tolist() == [alpha]

        ckpts = api.checkpoint_choices(svc, alpha)
        assert list(ckpts.items()) == [(str(kept[12]), "step 12"), (str(kept[4]), "step 4")]
        assert api.checkpoint_choices(svc, failed.run_id) == {}
        kept[12].unlink()                                              # deleted since: no longer offered
        assert api.checkpoint_choices(svc, alpha) == {str(kept[4]): "step 4"}
    finally:
        svc.close()


def test_keep_valid_drops_stale_selections():
    from tracer_core import api

    choices = {"r3": "c", "r2": "b", "r1": "a"}
    assert api.keep_valid(["r1", "gone", "r3"], choices) == ["r1", "r3"]           # the user's order is kept
    assert api.keep_valid([], choices, default=["r3"]) == []                        # an emptied selection stays empty
    assert api.keep_valid(None, choices, default=pd.Series(["r3", "r2"])) == ["r3", "r2"]   # unset: the default
    assert api.keep_valid(None, choices) == []
    assert api.keep_valid(["r1"], {}) == []
