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
