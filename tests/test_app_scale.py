"""Live dynamics and Runs at lab scale (issue 13), under AppTest on stores written in the run writer's format:
store-side smoothing (raw untouched), zoom at full resolution, band spreads, server-side paging, group rows,
the images/s and skipped-images columns (and the writer recording them). Behaviour only, no wall-clock asserts."""
from __future__ import annotations

import json
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from tracer_core.config import RunConfig, TrainConfig
from tracer_core.metrics.smoothing import Smoothing
from tracer_core.store import schema
from tracer_core.store.runfiles import write_json_atomic
from tracer_core.store.runstore import RunStore
from tracer_core.store.writer import RunWriter

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
import gen_lab_store as gen  # noqa: E402

N = 3000          # logged steps of the long series (shown as <= 600 points)


def _write(data_dir, values: np.ndarray, seed: int = 0) -> str:
    """A finished run through the real RunWriter: loss/total = values at steps 1..len, lr constant."""
    w = RunWriter.create(RunConfig(name=f"long-s{seed}", train=TrainConfig(seed=seed, steps=len(values))), data_dir,
                         flush_s=3600)
    w.on_start(SimpleNamespace(total_steps=len(values), device="cpu"))
    for s, v in enumerate(values.tolist(), start=1):
        w.on_step(s, {("loss", "total"): v, ("lr", ""): 1e-5})
    w.close("done")
    return w.run_id


def _noisy(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(1, n + 1)
    return np.exp(-t / (0.3 * n)) + rng.normal(0, 0.05, n)


def _open(at, page, **state):
    for k, v in state.items():
        at.session_state[k] = v
    at.run()
    at.switch_page(page)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def _loss_traces(at) -> tuple[list[dict], list[dict]]:
    figs = [json.loads(el.proto.spec) for el in at.get("plotly_chart")]
    fig = next(f for f in figs if f["layout"]["title"]["text"].startswith("Loss"))
    raw = [t for t in fig["data"] if t["name"].endswith("(raw)")]
    return raw, [t for t in fig["data"] if not t["name"].endswith("(raw)")]


@pytest.fixture(scope="module")
def long_runs(tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("tracer-long")
    values = {seed: _noisy(N, seed) for seed in range(3)}
    return data_dir, {seed: _write(data_dir, v, seed) for seed, v in values.items()}, values


def test_smoothing_control_changes_smoothed_not_raw_and_zoom_is_full_resolution(long_runs, app_for):
    data_dir, ids, values = long_runs
    at = _open(app_for(data_dir), "views/dynamics.py", dynamics_runs=[ids[0]])
    raw, smooth = _loss_traces(at)
    x = np.asarray(raw[0]["x"])
    assert 50 < len(x) <= 600 and raw[0]["opacity"] < 0.5            # downsampled, raw drawn faint
    assert np.array_equal(raw[0]["y"], values[0][x - 1])               # raw: the logged values at those steps
    full = Smoothing("ema", 0.6).apply(values[0])                      # the smoothing of the *full* series
    assert np.allclose(smooth[0]["y"], full[x - 1], atol=1e-9, rtol=0)
    at.slider(key="dyn_smoothing").set_value(0.95).run()
    raw2, smooth2 = _loss_traces(at)
    assert raw2[0]["x"] == raw[0]["x"] and raw2[0]["y"] == raw[0]["y"]
    assert np.allclose(smooth2[0]["y"], Smoothing("ema", 0.95).apply(values[0])[x - 1], atol=1e-9, rtol=0)
    assert not np.allclose(smooth2[0]["y"], smooth[0]["y"])
    at.selectbox(key="dyn_smooth_kind").set_value("gaussian").run()
    _, smooth3 = _loss_traces(at)
    assert np.allclose(smooth3[0]["y"], Smoothing("gaussian", 3.0).apply(values[0])[x - 1], atol=1e-9, rtol=0)
    at.number_input(key="dyn_zoom_lo").set_value(1000)
    at.number_input(key="dyn_zoom_hi").set_value(1300).run()           # 301 steps fit the 600-point budget
    raw4, smooth4 = _loss_traces(at)
    assert raw4[0]["x"] == list(range(1000, 1301)) and np.array_equal(raw4[0]["y"], values[0][999:1300])
    assert np.allclose(smooth4[0]["y"], Smoothing("gaussian", 3.0).apply(values[0])[999:1300], atol=1e-9, rtol=0)
    at.selectbox(key="dyn_smooth_kind").set_value("off").run()
    raw5, plain = _loss_traces(at)
    assert not raw5 and plain[0]["x"] == list(range(1000, 1301))       # off: one trace, the raw values
    at.button(key="dyn_zoom_reset").click().run()
    assert len(_loss_traces(at)[1][0]["x"]) == len(x)                   # full range again, downsampled


@pytest.mark.parametrize("spread", ["minmax", "sem", "ci95"])
def test_band_spread_choice(long_runs, app_for, spread):
    data_dir, ids, values = long_runs
    at = _open(app_for(data_dir), "views/dynamics.py", dynamics_runs=list(ids.values()), dyn_smooth_kind="off",
               dyn_groups=True, dyn_band_spread=spread)
    figs = [json.loads(el.proto.spec) for el in at.get("plotly_chart")]
    fig = next(f for f in figs if f["layout"]["title"]["text"].startswith("Loss"))
    assert {"minmax": "min–max", "sem": "standard error", "ci95": "95 % CI"}[spread] in fig["layout"]["title"]["text"]
    band = next(t for t in fig["data"] if t.get("fill") == "toself")
    line = next(t for t in fig["data"] if t.get("meta"))
    assert "(n=3)" in line["name"]
    x = np.asarray(line["x"])
    Y = np.vstack([values[s][x - 1] for s in range(3)])               # same steps in every run: no interpolation
    hi = np.asarray(band["y"][:len(x)])
    mean, std = Y.mean(0), Y.std(0, ddof=1)
    want = {"minmax": Y.max(0), "sem": mean + std / np.sqrt(3), "ci95": mean + 4.302652729911275 * std / np.sqrt(3)}
    assert np.allclose(line["y"], mean) and np.allclose(hi, want[spread])   # t(0.975, df=2) = 4.3027


@pytest.fixture(scope="module")
def many_runs(tmp_path_factory):
    """60 generated runs (the writer's format) with images/s and skipped images in status.json, as the writer
    records them; 4 method/teacher variants x 2 lr x seeds."""
    data_dir = tmp_path_factory.mktemp("tracer-many")
    ids = gen.generate(data_dir, runs=60, n_series=1, steps=5)
    for i, rid in enumerate(ids):
        path = data_dir / "runs" / rid / schema.STATUS_FILE
        st = json.loads(path.read_text())
        write_json_atomic(path, {**st, "images_per_s": 100.0 + i, "skipped_images": i % 3})
    return data_dir, ids


def test_runs_paging_groups_and_throughput_columns(many_runs, app_for):
    data_dir, ids = many_runs
    at = _open(app_for(data_dir), "views/runs.py", runs_page_size=25)
    store = RunStore(data_dir, refresh_interval_s=None)
    runs = store.list_runs().sort_values(["created", "run_id"], ascending=False)
    table = at.dataframe[0].value
    assert list(table["run_id"]) == runs["run_id"].tolist()[:25]
    assert any("Runs 1–25 of 60" in c.value for c in at.caption)
    at.number_input(key="runs_page_no").set_value(2).run()
    assert list(at.dataframe[0].value["run_id"]) == runs["run_id"].tolist()[25:50]
    at.number_input(key="runs_page_no").set_value(3).run()
    last = at.dataframe[0].value
    assert list(last["run_id"]) == runs["run_id"].tolist()[50:] and any("Runs 51–60 of 60" in c.value for c in at.caption)
    want = {rid: (100.0 + i, i % 3) for i, rid in enumerate(ids)}
    assert [tuple(r) for r in last[["images_per_s", "skipped_images"]].to_numpy()] == [want[r] for r in last["run_id"]]
    at.multiselect(key="runs_method").set_value(["tracer"]).run()      # a filter: total and pages follow
    assert any("of 30" in c.value for c in at.caption) and at.number_input(key="runs_page_no").value == 2
    at.multiselect(key="runs_method").set_value([]).run()
    at.multiselect(key="runs_group_by").set_value(["method", "teacher"])
    at.selectbox(key="runs_group_metric").set_value("accuracy on mnist").run()
    groups = next(d.value for d in at.dataframe if "mean" in d.value.columns)
    ev = store.evaluations(ids, datasets=["mnist"], metrics=["accuracy"]).merge(runs[["run_id", "method", "teacher"]])
    ref = ev.groupby(["method", "teacher"])["value"].agg(["count", "mean", "std"]).reset_index()
    got = groups.merge(ref, on=["method", "teacher"], suffixes=("", "_ref"))
    assert len(got) == len(ref) == 4 and (got["n"] == got["count"]).all() and (got["runs"] == 15).all()
    assert np.allclose(got["mean"], got["mean_ref"]) and np.allclose(got["std"], got["std_ref"])


def test_writer_records_images_per_s_and_skipped_images(tmp_path):
    w = RunWriter.create(RunConfig(), tmp_path, flush_s=3600)
    w.on_start(SimpleNamespace(total_steps=3, device="cpu"))
    for s, (ips, skipped) in enumerate([(10.0, 0), (200.0, 1), (300.0, 2)], start=1):
        w.on_step(s, {("images_per_s", ""): ips, ("skipped_images", "train"): float(skipped)})
    w.flush()
    w._write_status()
    st = json.loads((w.run_dir / schema.STATUS_FILE).read_text())
    assert st["images_per_s"] == pytest.approx(250.0) and st["skipped_images"] == 2   # first step left out
    w.on_end(SimpleNamespace(status="done", error="", steps=3, wall_time_s=1.0, steps_per_s=3.0, checkpoint="",
                             final_eval={}, images_per_s=240.0, skipped_images=2))
    st = json.loads((w.run_dir / schema.STATUS_FILE).read_text())
    assert st["images_per_s"] == 240.0 and st["summary"]["skipped_images"] == 2
    row = RunStore(tmp_path, refresh_interval_s=None).list_runs()
    assert row["images_per_s"].tolist() == [240.0] and row["skipped_images"].tolist() == [2]
    assert pd.api.types.is_float_dtype(row["images_per_s"])
