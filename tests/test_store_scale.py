"""The store at lab scale (issue 13): smoothing before downsampling, one grid per request, zoom, seed bands,
sealed finished runs, compaction, a second process, the Runs table. Behaviour only, no wall-clock asserts."""
from __future__ import annotations

import builtins
import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from tracer_core.config import RunConfig, TrainConfig
from tracer_core.metrics.bands import band_lines, band_stats, interpolate_to_grid
from tracer_core.metrics.smoothing import Smoothing
from tracer_core.store import indexer, schema
from tracer_core.store.downsample import grid_bucket
from tracer_core.store.runstore import RunStore
from tracer_core.store.writer import RunWriter

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
import gen_lab_store as gen  # noqa: E402

KEY = ("loss", "total")


def write(data_dir, values: dict[int, float], *, close=True, seed=0, **cfg):
    """A run through the real RunWriter; ``values``: step -> value of loss/total."""
    w = RunWriter.create(RunConfig(train=TrainConfig(seed=seed), **cfg), data_dir, flush_s=3600)
    w.on_start(SimpleNamespace(total_steps=len(values), device="cpu"))
    for s, v in values.items():
        w.on_step(s, {KEY: v})
    w.flush()
    if close:
        w.close("done")
    return w


def noisy(n, seed=0, sigma=0.05):
    rng = np.random.default_rng(seed)
    t = np.arange(1, n + 1)
    return dict(zip(t.tolist(), (np.exp(-t / (0.3 * n)) + rng.normal(0, sigma, n)).tolist()))


@pytest.fixture
def data_dir(tmp_path):
    return tmp_path / "data"


# -- smoothing ---------------------------------------------------------------------------------------------

def loop_ema(v, w):   # the formula as written in the docstring (and charts.smooth), one value at a time
    out, m, k = [], 0.0, 0
    for x in v:
        if not np.isfinite(x):
            out.append(x)
            continue
        m, k = w * m + (1 - w) * x, k + 1
        out.append(m / (1 - w ** k))
    return np.array(out)


def test_smoothing_functions_match_reference_loops():
    rng = np.random.default_rng(1)
    v = rng.normal(size=3000)
    v[[5, 700, 701]] = np.nan
    v[900] = np.inf
    fin = np.flatnonzero(np.isfinite(v))
    np.testing.assert_allclose(Smoothing("ema", 0.97).apply(v), loop_ema(v, 0.97), rtol=0, atol=1e-12)
    mean = Smoothing("mean", 10).apply(v)
    x = v[fin]
    np.testing.assert_allclose(mean[fin], [x[max(0, k - 9):k + 1].mean() for k in range(len(x))], atol=1e-12)
    sig, g = 3.0, Smoothing("gaussian", 3.0).apply(v)
    for k in (0, 6, 702, 1500, 2999):
        j = fin[np.abs(fin - k) <= 12]
        wts = np.exp(-(j - k) ** 2 / (2 * sig * sig))
        assert g[k] == pytest.approx(np.sum(wts * v[j]) / wts.sum(), abs=1e-10)
    assert np.isnan(g[5]) and np.isinf(g[900]) and np.isnan(mean[700])
    with pytest.raises(ValueError, match="smoothing"):
        Smoothing("ema", 1.0)


@pytest.mark.parametrize("smoothing", [Smoothing("ema", 0.99), Smoothing("mean", 50), Smoothing("gaussian", 20)])
def test_smoothed_long_series_equals_smoothing_of_the_full_series(data_dir, smoothing):
    w = write(data_dir, noisy(50_000))
    store = RunStore(data_dir, refresh_interval_s=None)
    full = store.series([w.run_id], max_points=None)
    reference = pd.Series(smoothing.apply(full["value"].to_numpy()), index=full["step"])
    out = store.series([w.run_id], max_points=500, smoothing=smoothing)
    assert 100 < len(out) <= 500
    np.testing.assert_allclose(out["smoothed"].to_numpy(), reference.loc[out["step"]].to_numpy(), rtol=0, atol=1e-9)
    # smoothing the shown points instead (the old behaviour) is visibly different: the test can fail
    shown = smoothing.apply(out["value"].to_numpy())
    assert np.abs(shown - out["smoothed"].to_numpy()).mean() > 1e-3
    zoom = store.series([w.run_id], max_points=500, step_range=(20_000, 20_300), smoothing=smoothing)
    np.testing.assert_allclose(zoom["smoothed"], reference.loc[zoom["step"]], rtol=0, atol=1e-9)


# -- one grid, extremes, zoom ---------------------------------------------------------------------------------

def test_short_and_long_run_share_one_grid_and_keep_extremes(data_dir):
    short = write(data_dir, noisy(300, seed=1)).run_id
    long_ = write(data_dir, noisy(30_000, seed=2)).run_id
    store = RunStore(data_dir, refresh_interval_s=None)
    raw = store.series([short, long_], max_points=None)
    out = store.series([short, long_], max_points=101)
    grid = out.attrs["grid"]
    assert (grid["start"], grid["stop"], grid["buckets"]) == (1, 30_000, 49)
    for rid in (short, long_):
        r, o = raw[raw.run_id == rid], out[out.run_id == rid]
        assert len(o) <= 101 and set(o.step) <= set(r.step)
        assert {r.step.min(), r.step.max(), r.loc[r.value.idxmin(), "step"], r.loc[r.value.idxmax(), "step"]} <= set(o.step)
        interior = o[(o.step != r.step.min()) & (o.step != r.step.max())]
        assert grid_bucket(interior.step, grid).value_counts().max() <= 2     # min + max per bucket
        for b, rows in r.groupby(grid_bucket(r.step, grid).to_numpy()):      # every bucket's extremes are there
            assert {rows.loc[rows.value.idxmin(), "step"], rows.loc[rows.value.idxmax(), "step"]} <= set(o.step)
    # on its own grid the 300-step run would fill 49 buckets; on the panel's it spans under one bucket
    assert len(out[out.run_id == short]) <= 4
    assert len(store.series([short], max_points=101)) > 50
    both = store.series([short, long_], max_points=500)
    assert len(both[both.run_id == short]) == 300                            # fits the budget: returned whole


def test_zoom_returns_full_resolution_of_the_visible_range(data_dir):
    rid = write(data_dir, noisy(30_000)).run_id
    store = RunStore(data_dir, refresh_interval_s=None)
    raw = store.series([rid], max_points=None)
    zoom = store.series([rid], max_points=500, step_range=(1000, 1300))
    expect = raw[(raw.step >= 1000) & (raw.step <= 1300)]
    assert zoom.step.tolist() == expect.step.tolist() and np.array_equal(zoom.value, expect.value)
    wide = store.series([rid], max_points=500, step_range=(1000, 11_000))
    assert wide.attrs["grid"]["start"] == 1000 and len(wide) <= 500 and wide.step.between(1000, 11_000).all()


# -- seed bands ---------------------------------------------------------------------------------------------------

def test_band_statistics_and_interpolation_against_numpy(data_dir):
    rng = np.random.default_rng(3)
    steps = {"a": np.arange(0, 101), "b": np.arange(0, 101, 2), "c": np.arange(0, 91, 3)}
    vals = {k: rng.normal(size=len(s)) for k, s in steps.items()}
    ids = {k: write(data_dir, dict(zip(s.tolist(), vals[k].tolist())), seed=i).run_id
           for i, (k, s) in enumerate(steps.items())}
    store = RunStore(data_dir, refresh_interval_s=None)
    out = store.band({"g": list(ids.values())}, "loss", "total", center="mean", spread="ci95", max_points=None)
    grid = out["step"].to_numpy()
    assert grid.tolist() == list(range(0, 101))                        # union of steps, nothing dropped
    Y = np.vstack([np.interp(grid, steps[k], vals[k], left=np.nan, right=np.nan) for k in "abc"])
    assert out.set_index("step").loc[7, "n"] == 3 and out.set_index("step").loc[95, "n"] == 2
    b7 = out.set_index("step").loc[7]
    assert b7["mean"] == pytest.approx((vals["a"][7] + (vals["b"][3] + vals["b"][4]) / 2
                                        + (2 * vals["c"][2] + vals["c"][3]) / 3) / 3)   # c: 1/3 of the way from step 6 to 9
    col = Y[:, 7]
    t_975_df2 = 4.302652729911275                                       # Student t quantile table, df = 2
    assert b7["std"] == pytest.approx(np.std(col, ddof=1)) and b7["sem"] == pytest.approx(np.std(col, ddof=1) / np.sqrt(3))
    assert b7["lo"] == pytest.approx(col.mean() - t_975_df2 * np.std(col, ddof=1) / np.sqrt(3))
    assert b7["median"] == pytest.approx(np.median(col)) and b7["min"] == col.min() and b7["max"] == col.max()
    s = band_stats(Y)
    np.testing.assert_allclose(s["mean"], np.nanmean(Y, axis=0))
    np.testing.assert_allclose(s["std"], np.nanstd(Y, axis=0, ddof=1))
    for spread, (lo, hi) in {"std": (s["mean"] - s["std"], s["mean"] + s["std"]),
                             "sem": (s["mean"] - s["sem"], s["mean"] + s["sem"]),
                             "minmax": (np.nanmin(Y, 0), np.nanmax(Y, 0))}.items():
        c, l, h = band_lines(s, "mean", spread)
        np.testing.assert_allclose(l, lo) and np.testing.assert_allclose(h, hi)
    c, _, _ = band_lines(s, "median", "std")
    np.testing.assert_allclose(c, np.nanmedian(Y, axis=0))
    assert np.isnan(interpolate_to_grid([1, 2], [0.0, 1.0], [0, 1.5, 3])[[0, 2]]).all()
    thin = store.band({"g": list(ids.values())}, "loss", "total", max_points=20)
    assert len(thin) <= 20 and thin.step.iloc[0] == 0 and thin.step.iloc[-1] == 100


# -- sealed runs, compaction, second process ----------------------------------------------------------------

def test_finished_runs_are_not_rescanned_on_refresh(data_dir, monkeypatch):
    done = [write(data_dir, noisy(50, seed=k)).run_id for k in range(3)]
    live = write(data_dir, noisy(20), close=False)
    store = RunStore(data_dir, refresh_interval_s=None)
    assert len(store.series(done + [live.run_id], max_points=None)) == 170
    touched: list[str] = []
    real_stat, real_open, real_scandir = os.stat, builtins.open, os.scandir
    monkeypatch.setattr(os, "stat", lambda p, *a, **k: touched.append(str(p)) or real_stat(p, *a, **k))
    monkeypatch.setattr(builtins, "open", lambda p, *a, **k: touched.append(str(p)) or real_open(p, *a, **k))
    monkeypatch.setattr(os, "scandir", lambda p=".": touched.append(str(p)) or real_scandir(p))
    live.on_step(21, {KEY: 0.5})
    live.flush()
    assert store.refresh()["rows"] == 1
    assert not [p for p in touched if any(r in p for r in done)], touched
    assert any(live.run_id in p for p in touched)
    live.close("done")
    store.refresh()                        # reads the end, seals the run
    touched.clear()
    store.refresh()
    assert not [p for p in touched if any(r in p for r in done + [live.run_id])], touched
    other = RunStore(data_dir, in_memory=True, refresh_interval_s=None)   # an edit from another store ...
    other.rename(done[0], "renamed")
    store.refresh()                        # ... is announced in the journal and re-read for that run only
    assert store.get_run(done[0])["name"] == "renamed"
    assert store.refresh(full=True)["runs"] == 4
    assert (schema.compact_dir(data_dir) / done[1] / "manifest.json").is_file()
    import shutil
    shutil.rmtree(data_dir / "runs" / done[1])     # a sealed run deleted by hand: the listing notices
    store.refresh()
    assert done[1] not in set(store.list_runs().run_id) and not (schema.compact_dir(data_dir) / done[1]).exists()


def _snapshot(store: RunStore, ids) -> dict:
    cols = ["run_id", "name", "method", "teacher", "seed", "status", "steps_done", "total", "config", "tags"]
    return {"runs": store.list_runs(run_ids=ids)[cols].to_json(), "series": store.series(ids, max_points=None).to_json(),
            "evals": store.evaluations(ids).to_json(), "down": store.series(ids, max_points=50).to_json()}


def test_deleting_the_duckdb_file_rebuilds_identical_results(data_dir, monkeypatch):
    ids = gen.generate(data_dir, runs=4, n_series=3, steps=300)
    with RunStore(data_dir, refresh_interval_s=None) as store:
        before = _snapshot(store, ids)
    # Compacted series are sorted by (name, context, step), so a reader of one name skips the others' row groups.
    import duckdb
    rows = duckdb.sql(f"SELECT name, context, step FROM '{schema.compact_dir(data_dir) / ids[0] / 'series.parquet'}'"
                      ).fetchall()
    assert len({r[:2] for r in rows}) == 3 and rows == sorted(rows)
    path = schema.store_path(data_dir)
    path.unlink()
    Path(f"{path}.wal").unlink(missing_ok=True)
    reads = []
    real = indexer.read_new
    monkeypatch.setattr(indexer, "read_new", lambda p, *a: reads.append(str(p)) or real(p, *a))
    with RunStore(data_dir, refresh_interval_s=None) as store:
        assert _snapshot(store, ids) == before
    assert reads == []                     # loaded from the compacted Parquet files, no JSONL parsed
    path.unlink()
    import shutil
    shutil.rmtree(schema.compact_dir(data_dir))
    with RunStore(data_dir, refresh_interval_s=None) as store:
        assert _snapshot(store, ids) == before
    assert len(reads) >= 4                 # no compaction left: rebuilt from the run folders


SECOND = """
import json, sys
from tracer_core.store import indexer
from tracer_core.store.runstore import RunStore
reads = []
real = indexer.read_new
indexer.read_new = lambda p, *a: reads.append(str(p)) or real(p, *a)
s = RunStore(sys.argv[1], refresh_interval_s=None)
print(json.dumps({"in_memory": s.in_memory, "notices": s.notices, "reads": reads,
                  "series": s.series(sys.argv[2:], max_points=None).to_json()}))
"""


def test_second_process_reads_the_store_while_the_first_holds_it(data_dir):
    ids = gen.generate(data_dir, runs=3, n_series=2, steps=200)
    store = RunStore(data_dir, refresh_interval_s=None)           # holds the DuckDB file
    live = write(data_dir, noisy(30), close=False)               # not compacted: read from its folder
    out = subprocess.run([sys.executable, "-c", SECOND, str(data_dir), *ids, live.run_id], capture_output=True,
                         text=True, env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=120)
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["in_memory"] and any("held by another process" in n for n in got["notices"])
    assert not [p for p in got["reads"] if any(r in p for r in ids)]     # finished runs: from Parquet
    assert any(live.run_id in p for p in got["reads"])
    store.refresh()
    assert got["series"] == store.series(ids + [live.run_id], max_points=None).to_json()
    live.close("done")


# -- generator, Runs table --------------------------------------------------------------------------------------

def test_generated_run_is_ingested_like_a_runwriter_run(data_dir, tmp_path):
    cfg = gen.config_for(2, 40)
    names = gen.NAMES[:3]
    vals = gen.values_for(np.random.default_rng(0), 3, 40)
    vals[5, 1] = np.nan
    with RunWriter.create(cfg, data_dir) as w:
        w.on_start(SimpleNamespace(total_steps=40, device="cpu"))
        for i in range(40):
            w.on_step(i + 1, {k: vals[i, j] for j, k in enumerate(names)})
        w.on_eval(SimpleNamespace(step=40, metrics={"mnist": {"accuracy": 0.9}}, reliability={}, similarities=[]))
        w.close("done")
    g = gen.write_run(data_dir, cfg, list(range(1, 41)), [1.7e9 + i for i in range(40)], names, vals,
                      {"mnist": {"accuracy": 0.9}})
    store = RunStore(data_dir, refresh_interval_s=None)
    a, b = (store.series([r], max_points=None).drop(columns=["run_id", "wall_time"]) for r in (w.run_id, g.name))
    pd.testing.assert_frame_equal(a, b)
    ea, eb = (store.evaluations([r]).drop(columns="run_id") for r in (w.run_id, g.name))
    pd.testing.assert_frame_equal(ea, eb)
    ra, rb = store.get_run(w.run_id), store.get_run(g.name)
    for k in ("name", "method", "teacher", "seed", "config", "status", "file_status", "step", "steps_done", "total",
              "format_version", "device"):
        assert ra[k] == rb[k], k


def test_runs_page_and_group_rows(data_dir):
    ids = gen.generate(data_dir, runs=16, n_series=1, steps=5)
    store = RunStore(data_dir, refresh_interval_s=None)
    page, total = store.runs_page(method="tracer", sort_by="seed", descending=False, limit=3)
    assert total == 8 and page.seed.tolist() == sorted(page.seed.tolist()) and len(page) == 3
    seen = []
    for off in range(0, total, 3):
        seen += store.runs_page(method="tracer", sort_by="seed", descending=False, limit=3, offset=off)[0].run_id.tolist()
    assert sorted(seen) == sorted(store.list_runs(method="tracer").run_id) and len(set(seen)) == 8
    assert store.runs_page(config={"optim.lr": 3e-5})[1] == 8
    with pytest.raises(ValueError, match="sort"):
        store.runs_page(sort_by="config; DROP TABLE runs")
    groups = store.runs_groups(by=["method", "teacher", "config.optim.lr"], eval_metric=("mnist", "accuracy"))
    ev = store.evaluations(ids, datasets=["mnist"]).merge(store.list_runs()[["run_id", "method", "teacher", "config"]])
    ev["lr"] = [json.loads(c)["optim"]["lr"] for c in ev.config]
    ref = ev.groupby(["method", "teacher", "lr"])["value"].agg(["count", "mean", "std"]).reset_index()
    assert len(groups) == len(ref) == 8
    for _, r in ref.iterrows():
        g = groups[(groups.method == r.method) & (groups.teacher == r.teacher) & (groups["config.optim.lr"].astype(float) == r.lr)]
        assert g.n.iloc[0] == r["count"] == 2 and g["mean"].iloc[0] == pytest.approx(r["mean"])
        assert g["std"].iloc[0] == pytest.approx(r["std"])


# -- the downsampling paths agree with each other and with the documented rule ------------------------------

def _messy_runs(data_dir) -> list[str]:
    """Runs of different lengths, two series each: noise, spikes, +-inf, a NaN divergence, a step logged twice
    (late, out of order: the table is then not in step order within the series)."""
    rng = np.random.default_rng(7)
    ids = []
    for k, n in enumerate((40, 700, 6000)):
        v = rng.normal(size=(n, 2))
        v[rng.integers(0, n, 5), 0] *= 50                                  # spikes
        v[n // 3, 1], v[n // 2, 1] = np.inf, -np.inf
        if k == 2:
            v[int(0.8 * n):, 0] = np.nan                                   # divergence
        w = RunWriter.create(RunConfig(train=TrainConfig(seed=k)), data_dir, flush_s=3600)
        w.on_start(SimpleNamespace(total_steps=n, device="cpu"))
        for s in range(n):
            w.on_step(s + 1, {KEY: v[s, 0], ("loss", "clip_loss"): v[s, 1]})
        w.on_step(n // 4, {KEY: 0.123, ("loss", "clip_loss"): 9.0})       # a step logged twice, later
        w.close("done")
        ids.append(w.run_id)
    return ids


def _rule(raw: pd.DataFrame, max_points: int) -> set:
    """The module docstring's rule, one series and bucket at a time (pandas, no shared code); NaN as "nan"."""
    s0, s1, nb = raw.step.min(), raw.step.max(), (max_points - 3) // 2
    out = []
    for _, g in raw.groupby(["run_id", "name", "context"]):
        if len(g) <= max_points:
            out.append(g)
            continue
        fin = g[~g.value.isna()]
        for _, gb in fin.groupby((fin.step - s0) * nb // (s1 - s0 + 1)):
            out.append(gb.loc[[gb.value.idxmin(), gb.value.idxmax()]])
        byst = g.sort_values("step", kind="stable")
        out += [byst.iloc[[0, -1]], byst[byst.value.isna()].iloc[:1]]
    return _rows(pd.concat(out))


def _rows(df: pd.DataFrame) -> set:
    return {(r.run_id, r.name, r.context, r.step, "nan" if np.isnan(r.value) else r.value) for r in df.itertuples()}


@pytest.mark.parametrize("max_points,step_range", [(50, None), (1000, None), (5, None), (3, None), (200, (100, 3000)),
                                                    (1000, (500, 900))])
def test_downsampling_paths_agree_with_the_rule(data_dir, max_points, step_range):
    from tracer_core.store import downsample as ds
    ids = _messy_runs(data_dir)
    store = RunStore(data_dir, refresh_interval_s=None)
    params = ds.request_params(ids, None, None, step_range)
    with store._cursor() as cur:
        sql = ds._series_sql(cur, params, max_points)
        hashed = ds._series_rows(cur, params, max_points, None)
        exact = ds._series_rows(cur, params, max_points, None, exact=True)
    for other in (hashed, exact):
        pd.testing.assert_frame_equal(sql, other)
        assert sql.attrs == other.attrs
    assert sql.groupby(["run_id", "name", "context"]).step.apply(lambda s: s.is_monotonic_increasing).all()
    raw = store.series(ids, max_points=None, step_range=step_range)
    if max_points >= 5:                                                    # below 5: global min and max only
        assert _rows(sql) == _rule(raw, max_points)
    assert sql.groupby(["run_id", "name", "context"]).size().max() <= max_points
    smooth = store.series(ids, max_points=max_points, step_range=step_range, smoothing=Smoothing("ema", 0.9))
    pd.testing.assert_frame_equal(smooth.drop(columns="smoothed"), sql)
