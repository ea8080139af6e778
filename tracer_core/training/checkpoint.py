"""Training checkpoints: student, teacher (with its counters), method extras, optimizer, step, config."""
from __future__ import annotations

from pathlib import Path

import torch

from ..models.checkpoint_io import CheckpointError

FORMAT_VERSION = 1


def save_checkpoint(path: str | Path, *, student, teacher, method, optimizer, step: int, config: dict) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {
        "format_version": FORMAT_VERSION,
        "step": step,
        "config": config,
        "student": student.clip.state_dict(),
        "teacher": teacher.state_dict() if teacher is not None else None,
        "method": method.state_dict(),
        "optimizer": optimizer.state_dict() if optimizer is not None else None,
    }
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(state, tmp)
    tmp.replace(path)     # atomic: a killed run never leaves a half-written checkpoint under the real name
    return path


def load_checkpoint(path: str | Path) -> dict:
    """Read a checkpoint written by ``save_checkpoint``; clear errors for missing/corrupt/foreign files."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{path}: checkpoint file not found")
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:
        raise CheckpointError(f"{path}: cannot read checkpoint ({type(e).__name__}: {str(e)[:200]})") from None
    if not isinstance(state, dict) or state.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(f"{path}: not a TRACER Studio training checkpoint (format_version "
                              f"{state.get('format_version') if isinstance(state, dict) else None!r}, "
                              f"expected {FORMAT_VERSION})")
    return state
