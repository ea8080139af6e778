"""The series table's integer run key (store schema 5): its format, and that the redundant key filter never
changes a result and is applied in the table scan, where exact integer zone maps skip other runs' row groups
(DuckDB keeps only 12 characters of a VARCHAR in its row-group statistics). Behaviour only, no timings."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from tracer_core.store import schema
from tracer_core.store.runstore import RunStore

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
import gen_lab_store as gen  # noqa: E402


@pytest.fixture
def data_dir(tmp_path):
    return tmp_path / "data"


def test_run_key_orders_by_creation_and_refuses_other_names():
    a, b = schema.run_key("20261203-091442-5931"), schema.run_key("20261203-091443-0000")
    assert a == 20261203091442 * 65536 + 0x5931 and a < b < 2**63
    epoch = schema.new_run_id(0)                                  # 19700101-000000-<random hex>
    assert schema.run_key(epoch) == 19700101000000 * 65536 + int(epoch[-4:], 16)
    for other in ("my-run", "20261203-091442-59311", "20261203-091442-59G1", "2026120-0914420-5931"):
        assert schema.run_key(other) is None, other


def test_key_filter_is_redundant_and_pushed_to_the_scan(data_dir):
    """The run_key filter never changes a result (same rows with and without it, and a request holding a run
    id outside the generated format gets no key filter at all), and DuckDB applies it in the table scan,
    where its exact integer zone maps can skip the row groups of other runs."""
    from tracer_core.store import series_rows as sr
    ids = gen.generate(data_dir, runs=3, n_series=2, steps=50)
    with RunStore(data_dir, refresh_interval_s=None) as store:
        cur = store._con.cursor()
        with_key = sr.request_params(ids[:2], None, None, None)
        assert with_key["keys"] == [schema.run_key(r) for r in ids[:2]]
        without = {**with_key, "keys": None}
        a, b = sr.fetch_rows(cur, with_key), sr.fetch_rows(cur, without)
        assert a.keys == b.keys and len(a.keys) == 4 and np.array_equal(a.value, b.value)
        assert sr.request_params(ids[:2] + ["imported-run"], None, None, None)["keys"] is None
        plan = cur.execute("EXPLAIN " + sr._ROWS.format(wall=""), with_key).fetchall()[0][1]
        assert "run_key IN (" in plan, plan
        stored = cur.execute("SELECT DISTINCT run_id, run_key FROM series").fetchall()
        assert all(k == schema.run_key(r) for r, k in stored) and len(stored) == 3
