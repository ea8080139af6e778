"""A second dashboard process on a store another process holds (issue 13): it reads the finished runs'
Parquet compactions in place instead of loading them, answers every query like the owner, and follows new,
live, newly sealed, edited and deleted runs. Real DuckDB files and a real second process; no mocks, no
wall-clock asserts."""
from __future__ import annotations

import inspect
import json
import os
import select
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from tracer_core.config import RunConfig, TrainConfig
from tracer_core.store import schema
from tracer_core.store.runstore import RunStore
from tracer_core.store.writer import RunWriter

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
import gen_lab_store as gen  # noqa: E402

NAME, CTX = gen.NAMES[0]


def snapshot(store, ids) -> dict:
    """What the pages ask the store for, as JSON text (compared between the two processes)."""
    cols = ["run_id", "name", "method", "teacher", "seed", "status", "steps_done", "total", "config", "tags"]
    page, total = store.runs_page(sort_by="seed", limit=3)
    return {"runs": store.list_runs(run_ids=ids)[cols].to_json(),
            "series": store.series(ids, max_points=None).to_json(),
            "down": store.series(ids, max_points=50).to_json(),
            "evals": store.evaluations(ids).to_json(), "catalog": store.series_catalog(ids).to_json(),
            "page": [page.run_id.tolist(), total],
            "groups": store.runs_groups(by=["method"], eval_metric=("mnist", "accuracy"))[["method", "n", "mean"]]
            .to_json(),
            "band": store.band({"g": ids[:2]}, NAME, CTX, max_points=40).to_json()}


CHILD = f"NAME, CTX = {NAME!r}, {CTX!r}\n" + inspect.getsource(snapshot) + r'''
import json, re, sys
from tracer_core.store import compact, indexer, schema
from tracer_core.store.runstore import RunStore
compact.ParquetViews.SWAP_EVERY_S = 0.0    # look for the owner's new compactions at every refresh
reads = []
real = indexer.read_new
indexer.read_new = lambda p, *a: reads.append(str(p)) or real(p, *a)
s = RunStore(sys.argv[1], refresh_interval_s=None)
cmd = {"op": "start"}
while True:
    if cmd["op"] == "refresh":
        s.refresh()
    elif cmd["op"] == "rename":
        s.rename(cmd["run"], cmd["name"])
        s.set_tags(cmd["run"], ["x", "y"])
    elif cmd["op"] == "delete":
        s.delete(cmd["run"])
    elif cmd["op"] == "series":     # a chart query before anything else (no refresh)
        s.series(cmd["ids"], max_points=None)
    snap = snapshot(s, cmd["ids"]) if cmd.get("ids") else None    # first: its queries may re-check files
    with s._cursor() as cur:
        view = cur.execute("SELECT sql FROM duckdb_views() WHERE view_name = 'series'").fetchone()[0]
        live = {t.table: sorted(r[0] for r in cur.execute(f"SELECT DISTINCT run_id FROM {t.table}_live").fetchall())
                for t in schema.TABLES}
        n_live = cur.execute("SELECT count(*) FROM series_live").fetchone()[0]
    out = {"in_memory": s.in_memory, "notices": s.notices, "reads": sorted(set(reads)), "live": live,
           "n_live": n_live, "parquet": sorted(re.findall(r"compact/([^/']+)/series\.parquet", view)),
           "runs": sorted(s.list_runs().run_id)}
    if snap is not None:
        out["snap"] = snap
    reads.clear()
    print(json.dumps(out), flush=True)
    line = sys.stdin.readline()
    if not line:
        break
    cmd = json.loads(line)
'''


class Second:
    """A second process running a RunStore on the same data dir, driven one JSON command per line."""

    def __init__(self, data_dir: Path, ids=()):
        self.p = subprocess.Popen([sys.executable, "-c", CHILD, str(data_dir)], stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
                                  env={**os.environ, "PYTHONPATH": str(ROOT)})
        self.start = self._reply()

    def _reply(self) -> dict:
        ready, _, _ = select.select([self.p.stdout], [], [], 300)
        line = self.p.stdout.readline() if ready else ""
        if not line:
            self.p.kill()
            raise AssertionError(f"second process gave no answer: {self.p.stderr.read()[-3000:]}")
        return json.loads(line)

    def ask(self, op: str = "state", **kw) -> dict:
        self.p.stdin.write(json.dumps({"op": op, **kw}) + "\n")
        self.p.stdin.flush()
        return self._reply()

    def close(self) -> None:
        if self.p.poll() is None:
            self.p.stdin.close()
            assert self.p.wait(timeout=120) == 0, self.p.stderr.read()[-3000:]


def live_run(data_dir: Path, steps: int) -> RunWriter:
    """A running run (real RunWriter, not closed) with a series and one evaluation."""
    w = RunWriter.create(RunConfig(train=TrainConfig(seed=7)), data_dir, flush_s=3600)
    w.on_start(SimpleNamespace(total_steps=1000, device="cpu"))
    extend(w, 1, steps)
    w.on_eval(SimpleNamespace(step=steps, metrics={"mnist": {"accuracy": 0.5}}, reliability={}, similarities=[]))
    w.flush()
    return w


def extend(w: RunWriter, first: int, last: int) -> None:
    for s in range(first, last + 1):
        w.on_step(s, {(NAME, CTX): 1.0 / s, ("loss", "total"): 2.0 / s})
    w.flush()


@pytest.fixture
def data_dir(tmp_path):
    return tmp_path / "data"


def test_second_process_reads_parquet_in_place_and_follows_new_live_and_sealed_runs(data_dir):
    done = gen.generate(data_dir, runs=4, n_series=3, steps=300)
    live = live_run(data_dir, 30)
    first = RunStore(data_dir, refresh_interval_s=None)            # the owner: holds the DuckDB file
    ids = done + [live.run_id]
    second = Second(data_dir)
    try:
        got = second.ask(ids=ids)
        assert got["in_memory"] and any("held by another process" in n for n in got["notices"])
        assert got["snap"] == snapshot(first, ids)
        # behaviour, not timing: the finished runs' series are a view over their Parquet files, never loaded,
        # never parsed from JSONL; only the live run's series rows are in memory (the small evaluations
        # table is copied into memory from the Parquet: compact.ParquetViews.LOADED)
        assert got["parquet"] == sorted(done)
        assert got["live"]["series"] == [live.run_id] and got["live"]["evaluations"] == sorted(ids)
        assert got["n_live"] == 60
        assert not [p for p in second.start["reads"] if any(r in p for r in done)]

        extend(live, 31, 40)                                       # the live run grows ...
        new = gen.generate(data_dir, runs=1, n_series=3, steps=300)  # ... a finished run appears ...
        first.refresh()                                            # ... and the owner compacts it
        got = second.ask("refresh", ids=ids + new)
        assert new[0] in got["runs"] and got["n_live"] == 80
        assert got["parquet"] == sorted(done + new) and got["live"]["series"] == [live.run_id]
        assert got["snap"] == snapshot(first, ids + new)

        live.close("done")
        got = second.ask("refresh")              # sealed here before the owner compacted it: still in memory
        assert got["live"]["series"] == [live.run_id]
        first.refresh()                          # the owner seals and compacts it ...
        got = second.ask("refresh", ids=ids + new)   # ... and the second process swaps it to the Parquet
        assert got["live"]["series"] == [] and got["n_live"] == 0 and live.run_id in got["parquet"]
        assert got["snap"] == snapshot(first, ids + new)
    finally:
        second.close()
        first.close()


def test_edits_and_deletes_across_the_two_processes(data_dir):
    done = gen.generate(data_dir, runs=4, n_series=2, steps=100)
    first = RunStore(data_dir, refresh_interval_s=None)
    second = Second(data_dir)
    try:
        second.ask("rename", run=done[0], name="renamed in the second process")   # and tags x, y
        first.refresh()                                            # the owner reads the edits journal
        row = first.get_run(done[0])
        assert row["name"] == "renamed in the second process" and list(row["tags"]) == ["x", "y"]
        got = second.ask("delete", run=done[1], ids=done)
        assert done[1] not in got["runs"] and done[1] not in got["parquet"]
        runs = json.loads(got["snap"]["runs"])
        assert {runs["run_id"][k]: v for k, v in runs["name"].items()}[done[0]] == "renamed in the second process"
        first.refresh()                     # the owner notices the folder is gone and drops the compaction
        assert done[1] not in set(first.list_runs().run_id)
        assert not (schema.compact_dir(data_dir) / done[1]).exists()
        keep = [done[0], done[2], done[3]]
        assert got["snap"]["series"] == snapshot(first, done)["series"]

        first.delete(done[2])               # the owner deletes a run the second reads from its Parquet:
        got = second.ask("series", ids=keep)   # the query finds a file gone, re-checks, answers without it
        assert done[2] not in got["runs"] and done[2] not in got["parquet"]
        assert got["snap"] == snapshot(first, keep)

        first.rebuild()                     # compactions dropped and rewritten under the second's views
        got = second.ask(ids=[done[0], done[3]])
        assert got["snap"] == snapshot(first, [done[0], done[3]])
    finally:
        second.close()
        first.close()


def test_replaced_file_of_a_compacted_run_is_reread_over_parquet(data_dir):
    """A hand-replaced (shorter) JSONL file of a run read from its Parquet: a full refresh drops the
    Parquet for that run and re-reads the folder, like the owner does (no duplicate, no stale row)."""
    rid = gen.generate(data_dir, runs=2, n_series=2, steps=50)[0]
    owner = RunStore(data_dir, refresh_interval_s=None)
    reader = RunStore(data_dir, refresh_interval_s=None, in_memory=True)   # the second process's mode
    assert len(reader.series([rid], max_points=None)) == 100
    series_file = data_dir / "runs" / rid / schema.TABLE_BY_NAME["series"].file
    lines = series_file.read_text().splitlines(keepends=True)
    series_file.write_text("".join(lines[:10]))
    for store in (owner, reader):
        store.refresh(full=True)
    assert len(reader.series([rid], max_points=None)) == 10
    assert reader.series([rid], max_points=None).to_json() == owner.series([rid], max_points=None).to_json()
    assert reader.evaluations([rid]).to_json() == owner.evaluations([rid]).to_json()
    reader.close()
    owner.close()


def test_rebuild_in_the_second_process_leaves_the_owners_compactions(data_dir):
    ids = gen.generate(data_dir, runs=2, n_series=2, steps=50)
    owner = RunStore(data_dir, refresh_interval_s=None)
    out = subprocess.run([sys.executable, "-m", "tracer_core.store.cli", "rebuild-store", "--data-dir", str(data_dir)],
                         capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "in-memory index only" in out.stderr and "rebuilt:" in out.stdout
    assert all((schema.compact_dir(data_dir) / r / "manifest.json").is_file() for r in ids)
    assert len(owner.series(ids, max_points=None)) == 200
    owner.close()
