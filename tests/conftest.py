"""Suite-wide settings: never write into the repo's data/ folder, keep CPU use predictable."""
import os
import tempfile
from pathlib import Path

import pytest

# Set before any tracer_core.store import so every writer/store in the suite lands in a scratch folder.
os.environ.setdefault("TRACER_DATA_DIR", tempfile.mkdtemp(prefix="tracer-test-data-"))
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")   # the suite is CPU-only and deterministic


@pytest.fixture(autouse=True, scope="session")
def _torch_threads():
    try:
        import torch
        torch.set_num_threads(2)
    except ImportError:
        pass
    yield


@pytest.fixture
def app_for(monkeypatch):
    """Factory: a Streamlit AppTest of app.py on ``data_dir`` with a fresh store and job runner (the
    cached services of an earlier data folder are released, which closes them); cleared again after."""
    import streamlit as st
    from streamlit.testing.v1 import AppTest

    app_py = str(Path(__file__).resolve().parents[1] / "app.py")

    def make(data_dir, timeout: float = 60) -> "AppTest":
        monkeypatch.setenv("TRACER_DATA_DIR", str(data_dir))
        st.cache_resource.clear()
        return AppTest.from_file(app_py, default_timeout=timeout)

    yield make
    st.cache_resource.clear()


@pytest.fixture
def open_page():
    """Opens a page under AppTest: ``open_page(at, "views/runs.py", key=value...)`` sets the session state, runs
    app.py first when it has not run (it calls st.navigation; else AppTest would run the bare page), switches
    to the page, runs it and asserts that it raised nothing; returns ``at``."""
    def open_(at, page: str, **state):
        for k, v in state.items():
            at.session_state[k] = v
        if "svc" not in at.session_state:
            at.run()                    # app.py first: it calls st.navigation
        at.switch_page(page)
        at.run()
        assert not at.exception, [e.value for e in at.exception]
        return at

    return open_


@pytest.fixture(scope="session")
def train_checkpointed():
    """Factory: ``train_checkpointed(data_dir, configs)`` trains each RunConfig in this process into a new run
    folder of ``data_dir`` with ``output_dir=<run folder>`` (as dashboard and CLI runs do, so each saves its final
    checkpoint as an artifact) and returns their run ids; each must finish "done"."""
    def train(data_dir, configs) -> list[str]:
        import torch

        from tracer_core.store.writer import RunWriter
        from tracer_core.training import run

        ids, threads = [], torch.get_num_threads()
        try:
            for cfg in configs:
                with RunWriter.create(cfg, data_dir) as writer:
                    assert run(cfg, writer, output_dir=writer.run_dir).status == "done"
                ids.append(writer.run_id)
        finally:
            torch.set_num_threads(threads)     # train.threads is process-wide: give the suite its setting back
        return ids

    return train


@pytest.fixture
def data_dir(tmp_path):
    """A fresh data folder (runs/, the DuckDB file) for one test; not created until a writer or store needs it."""
    return tmp_path / "data"
