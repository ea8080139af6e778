"""What the job tests share (tests/test_jobs.py, tests/test_jobs_processes.py): tiny run configs and a polling
wait. Waits poll the run's status with a generous limit that only guards against a hang."""
from __future__ import annotations

import time
from pathlib import Path

from tracer_core.config import load_preset

ROOT = Path(__file__).resolve().parents[1]
TINY = ["model.pretrained=none", "data.train_set=synthetic", 'data.eval_sets=["synthetic"]',
        "train.eval_at_start=false", "data.max_eval_samples=32", "data.batch_size=8"]


def tiny(steps: int, *extra: str):
    return load_preset("flyp", [f"train.steps={steps}", *TINY, *extra])


def until(fn, what, limit_s=120.0):
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        out = fn()
        if out:
            return out
        time.sleep(0.05)
    raise AssertionError(f"gave up waiting for {what}")
