"""A run's checkpoints and their models, shared by the Attributions and Robustness pages.

Model-based results come from a run *checkpoint* (recorded as an artifact; runs save one at the end). The
three models are the run's pretrained θ₀ (rebuilt from its config), the student and the teacher. Loading
imports :mod:`tracer_core.analysis.checkpoints` (torch) on first use, so ``import tracer_core.api`` stays
torch-free.
"""
from __future__ import annotations

from tracer_core.lazy import lazy

import functools
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

np = lazy("numpy")
pd = lazy("pandas")

from .common import md, teacher_label

MODEL_ROLES = ("pretrained", "student", "teacher")
NO_CHECKPOINT = ("No checkpoint recorded for this run: runs save one at the end (train.save_final) when they "
                 "have an output folder — dashboard and `python -m tracer_core train` runs do. Start a run on "
                 "**Launch** (or the demo on **Home**) and open this page when it has finished.")



def checkpoints_for_run(services, run_id: str) -> pd.DataFrame:
    """The run's checkpoints, newest first: step, path, exists, size_mb."""
    art = services.store.artifacts([run_id])
    art = art[art["kind"] == "checkpoint"].drop_duplicates("path", keep="last")
    paths = [Path(p) for p in art["path"]]
    out = pd.DataFrame({"step": art["step"].astype(int).to_numpy(), "path": [str(p) for p in paths],
                        "exists": [p.is_file() for p in paths],
                        "size_mb": [p.stat().st_size / 2**20 if p.is_file() else np.nan for p in paths]})
    return out.sort_values("step", ascending=False).reset_index(drop=True)


def checkpoint_choices(services, run_id: str) -> dict[str, str]:
    """Options of a checkpoint picker: path -> "step N" of the run's checkpoints whose file still exists,
    newest first (the default pick)."""
    ck = checkpoints_for_run(services, run_id)
    return {p: f"step {int(s)}" for p, s, ok in zip(ck["path"], ck["step"], ck["exists"]) if ok}


@dataclass
class CheckpointModels:
    """The pretrained θ₀, student and teacher (None without one) of a run checkpoint, in eval mode.

    ``lock`` serialises computations on the models (Grad-CAM swaps a block; WiSE-FT loads states)."""
    path: str
    models: dict[str, Any]
    tokenizer: Any
    config: dict
    step: int
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def roles(self) -> list[str]:
        return [r for r in MODEL_ROLES if self.models.get(r) is not None]

    @property
    def id_set(self) -> str:
        return self.config.get("data", {}).get("train_set", "")

    @property
    def eval_sets(self) -> list[str]:
        sets = list(self.config.get("data", {}).get("eval_sets", [])) or [self.id_set]
        return sorted(dict.fromkeys(sets), key=lambda d: d != self.id_set)

    def role_label(self, role: str) -> str:
        kind = self.config.get("teacher", {}).get("kind", "")
        return {"pretrained": "Pretrained θ₀", "student": "Student",
                "teacher": f"Teacher ({teacher_label(kind)})"}.get(role, role)


# The server holds at most MAX_LOADED checkpoints' models (three models each: a ViT-B/16 checkpoint is ~1.8 GB
# of weights), shared by every page and tab; the least recently used one is dropped first.
MAX_LOADED = 2
_LOADED: dict[tuple[str, int], CheckpointModels] = {}
_LOAD_LOCK = threading.Lock()


def load_checkpoint_models(path: str, keep: int = MAX_LOADED) -> CheckpointModels:
    """A run checkpoint's three models on the CPU (raises CheckpointError with a readable message). The last
    ``keep`` (at most MAX_LOADED) checkpoints used stay loaded, keyed by path and modification time."""
    from tracer_core.analysis.checkpoints import load_checkpoint_bundle   # torch: on first use
    key = (str(path), Path(path).stat().st_mtime_ns if Path(path).exists() else 0)
    with _LOAD_LOCK:
        if key not in _LOADED:
            b = load_checkpoint_bundle(path, "cpu")
            _LOADED[key] = CheckpointModels(str(path), {r: b[r] for r in MODEL_ROLES}, b["tokenizer"], b["config"],
                                            b["step"])
        _LOADED[key] = _LOADED.pop(key)                  # most recently used last
        while len(_LOADED) > max(1, min(int(keep), MAX_LOADED)):
            _LOADED.pop(next(iter(_LOADED)))
        return _LOADED[key]


@dataclass
class OpenedCheckpoint:
    """What an analysis page shows after opening a checkpoint: the models, or the error to show instead;
    ``note`` is a caption to show with the models (e.g. that the run has no teacher), "" when none."""
    models: CheckpointModels | None
    error: str = ""           # Markdown-safe (user text escaped), for st.error
    note: str = ""


def open_checkpoint(path: str) -> OpenedCheckpoint:
    """:func:`load_checkpoint_models` for a page: a load failure (missing or unreadable file, a checkpoint of
    another architecture) becomes a message naming the file instead of an exception."""
    try:
        cm = load_checkpoint_models(path)
    except (ValueError, OSError, RuntimeError) as e:
        return OpenedCheckpoint(None, f"Could not load the checkpoint {md(path)}: {md(e)}")
    note = "This run has no teacher: pretrained and student only." if cm.models.get("teacher") is None else ""
    return OpenedCheckpoint(cm, note=note)


@functools.lru_cache(maxsize=8)      # eval-set prefixes (tensors), bounded like the models
def _dataset(name: str, image_size: int, seed: int, max_samples: int | None, path: str, datasets_file: str,
             templates: str):
    from tracer_core.data import load_dataset
    return load_dataset(name, split="test", image_size=image_size, seed=seed, max_samples=max_samples, path=path,
                        datasets_file=datasets_file, templates=templates)


def eval_set(cm: CheckpointModels, name: str, max_samples: int | None = None):
    """One of the run's eval sets as its training-time evaluation loaded it: the run's datasets file (declared
    sets: ImageNet-R/A subset heads, ObjectNet's mapping and border crop) and its data.templates."""
    data = cm.config.get("data", {})
    n = int(max_samples or data.get("max_eval_samples") or 1000)
    path = data.get("path", "") if name in ("imagefolder", "csv") else ""
    return _dataset(name, int(cm.models["student"].image_size), int(data.get("seed", 0)), n, path,
                    str(data.get("datasets_file", "") or ""), str(data.get("templates", "") or ""))


def eval_set_info(cm: CheckpointModels, dataset: str) -> dict:
    """{"n": images (the run's evaluation prefix), "classnames": [...], "labels": [int, ...]} (no image decoded)."""
    ds = eval_set(cm, dataset)
    return {"n": len(ds), "classnames": list(ds.classnames), "labels": ds.labels.tolist()}
