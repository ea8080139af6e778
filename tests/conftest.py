"""Suite-wide settings: never write into the repo's data/ folder, keep CPU use predictable."""
import os
import tempfile

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
