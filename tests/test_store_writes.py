"""A refresh that finds nothing new writes nothing to the DuckDB file. Live and queued runs are re-read on every
refresh (their liveness ages); rewriting their unchanged runs rows was a delete + insert per run per refresh,
which DuckDB logs and holds in memory until its next checkpoint (bench/RESULTS.md, "Live view soak")."""
from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

from tracer_core.config import RunConfig
from tracer_core.store.runstore import RunStore
from tracer_core.store.writer import RunWriter, create_run_folder


def wal_size(store: RunStore) -> int:
    wal = Path(f"{store.path}.wal")
    return wal.stat().st_size if wal.exists() else 0


def test_refresh_without_changes_writes_nothing_and_a_change_is_written(tmp_path):
    data = tmp_path / "data"
    live = RunWriter.create(RunConfig(), data, flush_s=60)
    live.on_start(SimpleNamespace(total_steps=100, device="cpu"))
    live.on_step(1, {("loss", "combined"): 1.0})
    live.flush()
    queued = create_run_folder(RunConfig(), data, status="queued")     # as the job runner queues one
    with RunStore(data, refresh_interval_s=None) as store:
        runs = store.list_runs().set_index("run_id")
        assert set(runs["status"]) == {"running", "queued"} and len(runs) == 2
        before = wal_size(store)
        assert before > 0                           # the first refresh wrote the two runs
        for _ in range(20):
            store.refresh()
        assert wal_size(store) == before            # 20 refreshes of a live and a queued run: no write
        live.on_step(2, {("loss", "combined"): 0.5})
        live.flush()
        store.refresh()
        assert wal_size(store) > before
        assert list(store.series([live.run_id], ["loss"], ["combined"])["step"]) == [1, 2]
    live.close("done")
    assert queued.name in set(runs.index)
