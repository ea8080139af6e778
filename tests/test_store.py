"""Run store: writer -> run folder -> DuckDB index, against a real DuckDB file in tmp_path.

Behaviour only (no wall-clock assertions). Cross-process cases use a small writer script in a subprocess.
"""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import threading
from pathlib import Path
from types import SimpleNamespace

import duckdb
import numpy as np
import pandas as pd
import pytest

from tracer_core.config import LossConfig, OptimConfig, RunConfig, TeacherConfig, TrainConfig
from tracer_core.metrics import summaries as summ
from tracer_core.store import schema
from tracer_core.store.cli import main as cli_main
from tracer_core.store.runstore import RunStore, StoreError
from tracer_core.store.writer import RunWriter

ROOT = Path(__file__).resolve().parents[1]


def info(total):
    return SimpleNamespace(config={}, total_steps=total, device="cpu", precision="fp32", n_params=10,
                           n_trainable=5, versions={"torch": "x"})


def summary(status="done", steps=0, error=""):
    return SimpleNamespace(status=status, steps=steps, wall_time_s=1.0, steps_per_s=1.0, final_eval={},
                           summaries={}, error=error, checkpoint="")


def make_run(data_dir, steps=20, *, values=None, status="done", **cfg_kwargs) -> str:
    """A finished run written through the real writer; values(step) -> {(name, ctx): value}."""
    cfg = RunConfig(**cfg_kwargs)
    values = values or (lambda s: {("loss", "total"): 1.0 / s, ("teacher_student_kl", "combined"): 0.1 * s})
    with RunWriter.create(cfg, data_dir) as w:
        w.on_start(info(steps))
        for s in range(1, steps + 1):
            w.on_step(s, values(s))
        w.on_end(summary(status, steps))
    return w.run_id


@pytest.fixture
def data_dir(tmp_path):
    return tmp_path / "data"


# -- round trip ------------------------------------------------------------------------------------------

def test_round_trip(data_dir):
    cfg = RunConfig(name="rt", tags=("a", "b"), method="tracer",
                    teacher=TeacherConfig(kind="wma"), loss=LossConfig(lambda_sd=0.5))
    with RunWriter.create(cfg, data_dir) as w:
        w.on_start(info(5))
        for s in range(1, 6):
            w.on_step(s, {("loss", "total"): 2.0 / s, ("teacher_student_kl", "img"): float(s), ("lr", ""): 1e-4,
                          ("brand_new_stat", "x"): float("nan") if s == 3 else 0.0})
        w.on_eval(SimpleNamespace(step=5, metrics={"mnist": {"accuracy": 0.9, "ece": 0.05}},
                                  reliability={"mnist": [{"model": "student", "bin": 0, "lo": 0.0, "hi": 0.5,
                                                          "count": 4, "mean_confidence": 0.3, "accuracy": 0.25}]},
                                  similarities=[{"tower": "visual", "layer": "blocks.0", "layer_index": 0,
                                                 "pair": "student_vs_pretrained", "kind": "cka", "value": 0.8}]))
        w.on_checkpoint(5, "/ckpt/step5.pt")
        w.on_end(summary("done", 5))
    store = RunStore(data_dir)
    run = store.get_run(w.run_id)
    assert (run["name"], run["method"], run["teacher"], run["seed"], run["status"]) == ("rt", "tracer", "wma", 0, "done")
    assert list(run["tags"]) == ["a", "b"] and run["step"] == 5 and run["total"] == 5 and run["device"] == "cpu"
    assert json.loads(run["config"]) == cfg.to_dict()
    assert RunConfig.from_dict(json.loads(run["config"])) == cfg
    s = store.series([w.run_id], max_points=None)
    assert len(s) == 20
    kl = s[(s.name == "teacher_student_kl") & (s.context == "img")]
    assert kl.step.tolist() == [1, 2, 3, 4, 5] and kl.value.tolist() == [1.0, 2.0, 3.0, 4.0, 5.0]
    assert math.isnan(s[(s.name == "brand_new_stat") & (s.step == 3)].value.iloc[0])
    assert store.evaluations([w.run_id]).set_index("metric").value.to_dict() == {"accuracy": 0.9, "ece": 0.05}
    assert store.reliability([w.run_id]).iloc[0][["bin", "count", "accuracy"]].tolist() == [0, 4.0, 0.25]
    assert store.similarities([w.run_id]).iloc[0]["value"] == 0.8
    assert store.artifacts([w.run_id]).path.tolist() == ["/ckpt/step5.pt"]
    cat = store.series_catalog().set_index(["name", "context"])
    assert cat.loc[("brand_new_stat", "x"), "label"] == "Brand new stat"
    assert cat.loc[("teacher_student_kl", "img"), "higher_is_better"] == False  # noqa: E712
    store.close()
    # reopening the same file ingests nothing twice; a rebuild gives the same rows
    with RunStore(data_dir) as again:
        assert len(again.series([w.run_id], max_points=None)) == 20
        again.rebuild()
        assert len(again.series([w.run_id], max_points=None)) == 20


def test_incremental_ingest_and_torn_lines(data_dir):
    w = RunWriter.create(RunConfig(), data_dir, flush_s=3600)
    store = RunStore(data_dir, refresh_interval_s=None)
    for s in range(1, 11):
        w.on_step(s, {("loss", "total"): float(s)})
    w.flush()
    assert store.refresh()["rows"] == 10
    assert store.get_run(w.run_id)["status"] == "running"
    series_file = w.run_dir / "series.jsonl"
    with open(series_file, "a") as f:   # a line still being written ...
        f.write('{"step":11,"name":"loss","cont')
    assert store.refresh()["rows"] == 0
    with open(series_file, "a") as f:   # ... is ingested once complete; a garbage line is skipped
        f.write('ext":"total","value":11.0,"wall_time":1.0}\nnot json at all\n{"step":12,"name":"loss","context":"total","value":12.0,"wall_time":1.0}\n')
    stats = store.refresh()
    assert (stats["rows"], stats["bad_lines"]) == (2, 1)
    assert store.series([w.run_id], max_points=None).step.tolist() == list(range(1, 13))
    w.close("done")


# -- another process holding the store -----------------------------------------------------------------

def test_second_process_falls_back_to_memory_while_store_is_held(data_dir):
    make_run(data_dir, 5)
    store = RunStore(data_dir)   # this process holds the DuckDB file
    out = subprocess.run([sys.executable, "-m", "tracer_core.store.cli", "runs", "--data-dir", str(data_dir)],
                         capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "held by another process" in out.stderr and "in memory" in out.stderr
    assert "Traceback" not in out.stderr and len(store.list_runs()) == 1
    assert store.list_runs().run_id.iloc[0] in out.stdout


# -- versions and damaged files ----------------------------------------------------------------------------

def test_store_schema_mismatch_rebuilds_with_message(data_dir):
    rid = make_run(data_dir, 7)
    RunStore(data_dir).close()
    path = schema.store_path(data_dir)
    con = duckdb.connect(str(path))
    con.execute("UPDATE store_meta SET value = '999' WHERE key = 'schema_version'")
    con.close()
    with RunStore(data_dir) as store:
        assert any("schema version 999" in n and "rebuilding" in n for n in store.notices)
        assert len(store.series([rid], max_points=None)) == 14
    path.write_bytes(b"not a duckdb file" * 100)
    with RunStore(data_dir) as store:
        assert any("Could not open the store file" in n for n in store.notices)
        assert len(store.series([rid], max_points=None)) == 14


def test_run_folder_from_newer_version_is_listed_not_fatal(data_dir):
    good = make_run(data_dir, 3)
    bad = make_run(data_dir, 3)
    cfg_file = data_dir / "runs" / bad / "config.json"
    cfg_file.write_text(json.dumps({**json.loads(cfg_file.read_text()), "format_version": 999}))
    broken = data_dir / "runs" / "20000101-000000-dead"
    broken.mkdir()
    (broken / "config.json").write_text("{ torn")
    odd = data_dir / "runs" / "20000101-000000-0dd0"
    odd.mkdir()
    (odd / "config.json").write_text('{"format_version": 1, "config": {"train": "not an object"}}')
    (odd / "series.jsonl").write_text('{"step": 1, "name": "loss", "context": "", "value": 1}\n')
    store = RunStore(data_dir)
    runs = store.list_runs().set_index("run_id")
    assert runs.at[good, "status"] == "done"
    assert runs.at[bad, "status"] == "incompatible" and "newer than this TRACER Studio" in runs.at[bad, "error"]
    assert runs.at[broken.name, "status"] == "incompatible" and "not valid JSON" in runs.at[broken.name, "error"]
    assert runs.at[odd.name, "status"] == "incompatible" and "unreadable run folder" in runs.at[odd.name, "error"]
    assert len(store.series([bad], max_points=None)) == 0 and len(store.series([good], max_points=None)) == 6


# -- queries -----------------------------------------------------------------------------------------------

def spiky(s):
    v = math.sin(s / 50.0)
    if s == 4321:
        v = 25.0
    if s == 777:
        v = -30.0
    return {("loss", "total"): v, ("teacher_student_kl", "combined"): float(s % 97)}


@pytest.mark.parametrize("max_points", [3, 100, 1000, 20_000])
def test_downsampling_bounds_and_extremes(data_dir, max_points):
    rid = make_run(data_dir, 5000, values=spiky)
    store = RunStore(data_dir)
    full = store.series([rid], max_points=None)
    ds = store.series([rid], max_points=max_points)
    for (name, ctx), g in full.groupby(["name", "context"]):
        d = ds[(ds.name == name) & (ds.context == ctx)]
        assert 0 < len(d) <= max_points
        assert d.value.min() == g.value.min() and d.value.max() == g.value.max()
        real = set(zip(g.step, g.value))
        assert all(p in real for p in zip(d.step, d.value))   # only real points, never averages
        assert d.step.is_monotonic_increasing
        if max_points >= len(g):
            assert d.step.tolist() == g.step.tolist()
        elif max_points >= 5:
            assert d.step.iloc[0] == 1 and d.step.iloc[-1] == 5000
    with pytest.raises(ValueError):
        store.series([rid], max_points=1)


def test_downsampling_keeps_nan_marker_and_finite_extremes(data_dir):
    rid = make_run(data_dir, 2000, values=lambda s: {("loss", "total"): float("nan") if s > 1500 else float(s)})
    ds = RunStore(data_dir).series([rid], max_points=50)
    assert len(ds) <= 50 and ds.value.max() == 1500.0 and ds.value.min() == 1.0
    assert ds[ds.value.isna()].step.tolist() == [1501, 2000]   # the first NaN and the (NaN) last point


def test_summaries_match_formulas(data_dir):
    rid = make_run(data_dir, 40, values=lambda s: {("loss", "total"): 10.0 / s, ("teacher_student_agreement", "img"): s / 40})
    out = RunStore(data_dir).summaries([rid]).set_index("name")
    steps = np.arange(1, 41, dtype=float)
    loss = 10.0 / steps
    row = out.loc["loss"]
    assert row["n"] == 40 and row["last"] == pytest.approx(0.25) and row["best"] == pytest.approx(0.25)
    assert row["auc_normalized"] == pytest.approx(np.trapezoid(loss, steps) / (40 - 1 + 1e-9))
    assert row["early_slope"] == pytest.approx(np.polyfit(steps[:10], loss[:10], 1)[0])
    assert row["half_life_step"] == 2.0
    assert out.loc["teacher_student_agreement", "best"] == pytest.approx(1.0)   # higher is better
    assert row["early_slope"] == pytest.approx(summ.early_slope(steps, loss))


def test_filters_seed_groups_band_and_config_diff(data_dir):
    ids = [make_run(data_dir, 10, name=f"s{seed}", train=TrainConfig(seed=seed),
                    values=lambda s, k=seed: {("loss", "total"): float(s + k)}) for seed in (0, 1, 2)]
    other = make_run(data_dir, 10, name="lr", optim=OptimConfig(lr=3e-4))
    store = RunStore(data_dir)
    assert set(store.list_runs(seed=[1, 2]).run_id) == set(ids[1:])
    assert store.list_runs(config={"optim.lr": "0.0003"}).run_id.tolist() == [other]
    assert store.list_runs(config={"optim.lr": 3e-4, "train.seed": 0}).run_id.tolist() == [other]
    assert len(store.list_runs(config={"data.eval_sets": "mnist,colored_mnist,corrupted_mnist,sklearn_digits,heldout_fonts"})) == 4
    assert store.list_runs(config={"no.such.key": 1}).empty
    groups = store.seed_groups()
    big = groups[groups.n_runs == 3].iloc[0]
    assert sorted(big.run_ids) == sorted(ids) and sorted(big.seeds) == [0, 1, 2] and len(groups) == 2
    band = store.seed_band({big.group: big.run_ids}, "loss", "total").set_index("step")
    assert band.loc[5, "mean"] == 6.0 and band.loc[5, "lo"] == 5.0 and band.loc[5, "hi"] == 7.0
    assert band.loc[5, "std"] == pytest.approx(1.0) and band.loc[5, "n"] == 3
    diff = store.config_diff([ids[0], other])
    assert set(diff.index) == {"name", "optim.lr"}


def test_band_downsampling_keeps_extremes(data_dir):
    ids = [make_run(data_dir, 3000, train=TrainConfig(seed=k), values=spiky) for k in (0, 1)]
    store = RunStore(data_dir)
    full = store.seed_band({"g": ids}, "loss", "total", max_points=None)
    band = store.seed_band({"g": ids}, "loss", "total", max_points=60)
    assert len(band) <= 60 and band["mean"].max() == full["mean"].max() and band["lo"].min() == full["lo"].min()


# -- edits, export, injection ---------------------------------------------------------------------------------

EVIL = ["x'); DROP TABLE runs; --", "a\"b", "; DELETE FROM series WHERE 1=1; --", "' OR '1'='1", "%_\\"]


def test_sql_injection_looking_inputs_are_harmless(data_dir):
    rid = make_run(data_dir, 10, name=EVIL[0], tags=(EVIL[1],))
    store = RunStore(data_dir)
    store.rename(rid, EVIL[2])
    store.add_tags(rid, EVIL)
    n_rows = len(store.series([rid], max_points=None))
    assert store.get_run(rid)["name"] == EVIL[2]
    assert store.list_runs(tags=EVIL).run_id.tolist() == [rid]
    assert store.list_runs(name_contains="DELETE FROM").run_id.tolist() == [rid]
    for evil in EVIL:
        assert store.list_runs(method=evil).empty and store.list_runs(status=evil).empty
        expected = [rid] if evil == EVIL[0] else []      # config.name keeps the name the run started with
        assert store.list_runs(config={"name": evil}).run_id.tolist() == expected
        assert store.list_runs(config={evil: 1}).empty
        assert store.series([evil], max_points=10).empty and store.series([rid], names=[evil]).empty
        assert store.evaluations([rid], datasets=[evil]).empty
        if evil == EVIL[2]:
            assert store.resolve(evil) == rid                # the run's (new) name
        else:
            with pytest.raises(StoreError):
                store.resolve(evil)
    for bad_id in ("../../etc", "..", "a/b", EVIL[0]):
        with pytest.raises(StoreError):
            store.delete(bad_id, force=True)
    assert len(store.series([rid], max_points=None)) == n_rows and len(store.list_runs()) == 1
    store.rebuild()   # edits live in the run folder, so they survive a rebuild
    assert store.get_run(rid)["name"] == EVIL[2] and set(EVIL) <= set(store.get_run(rid)["tags"])


def test_rename_tag_delete_and_live_run_guard(data_dir):
    keep, gone = make_run(data_dir, 5, tags=("old",)), make_run(data_dir, 5)
    live = RunWriter.create(RunConfig(), data_dir)
    store = RunStore(data_dir)
    store.rename(keep, "better name")
    store.add_tags(keep, ["new", "new", " "])
    store.remove_tags(keep, ["old"])
    assert store.get_run(keep)["name"] == "better name" and list(store.get_run(keep)["tags"]) == ["new"]
    store.delete(gone)
    assert not (data_dir / "runs" / gone).exists() and store.get_run(gone) is None
    assert store.series([gone], max_points=None).empty
    with pytest.raises(StoreError, match="running"):
        store.delete(live.run_id)
    live.close("done")
    store.delete(live.run_id)
    assert store.list_runs().run_id.tolist() == [keep]


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_export(data_dir, tmp_path, fmt):
    rid = make_run(data_dir, 12, tags=("t1", "t2"))
    paths = RunStore(data_dir).export([rid], fmt, tmp_path / "out")
    read = pd.read_csv if fmt == "csv" else pd.read_parquet
    tables = {p.stem: read(p) for p in paths}
    assert len(tables["series"]) == 24 and tables["runs"].run_id.tolist() == [rid]
    assert len(tables["evaluations"]) == 0


def test_cli_commands(data_dir, tmp_path, capsys):
    rid = make_run(data_dir, 6, name="cli run")
    dd = ["--data-dir", str(data_dir)]
    assert cli_main(["runs", *dd]) == 0 and rid in capsys.readouterr().out
    assert cli_main(["show", rid[:-2], *dd]) == 0 and "cli run" in capsys.readouterr().out
    assert cli_main(["export", rid, "--format", "parquet", "--out", str(tmp_path / "x"), *dd]) == 0
    assert (tmp_path / "x" / "series.parquet").exists()
    assert cli_main(["show", "nope", *dd]) == 2
    assert cli_main(["delete", rid, "--yes", *dd]) == 0 and not (data_dir / "runs" / rid).exists()


def test_threads_query_while_refreshing(data_dir):
    ids = [make_run(data_dir, 300) for _ in range(3)]
    store = RunStore(data_dir, refresh_interval_s=0.0)
    errors = []

    def reader():
        try:
            for _ in range(15):
                store.series(ids, max_points=50)
                store.list_runs()
        except Exception as e:  # pragma: no cover - the assertion below reports it
            errors.append(e)

    threads = [threading.Thread(target=reader) for _ in range(3)]
    for t in threads:
        t.start()
    for _ in range(10):
        make_run(data_dir, 20)
        store.refresh()
    for t in threads:
        t.join()
    assert not errors and len(store.list_runs()) == 13


# -- import rules --------------------------------------------------------------------------------------------

def test_light_modules_import_no_heavy_libraries():   # (duckdb-only-in-runstore: tests/test_architecture.py)
    code = ("import sys, tracer_core.store.schema, tracer_core.store.writer, tracer_core.jobs.runner; "
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'streamlit', 'duckdb'}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert out.stdout.strip() == "[]", out.stderr
