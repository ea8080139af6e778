"""Training checkpoints: student, teacher (with its counters), method extras, optimizer, step, config.

Safe to open whatever its origin: one safetensors file. Every tensor is a safetensors entry named by its path
in the state (``student/visual.conv1.weight``, ``teacher/module/...``); everything else (config, counters,
teacher kind, optimizer hyper-parameters) is a JSON tree in the header's metadata, with each tensor replaced by
``{"__tensor__": name}``. Reading it parses JSON and raw tensor bytes only: nothing is unpickled, so a file
planted in a shared runs folder cannot run code. Files in the old pickle format (``torch.save``) are refused
with the command that converts them (:func:`convert_checkpoint`, run deliberately by the user).
"""
from __future__ import annotations

import json
from pathlib import Path

import torch

from ..models.checkpoint_io import CheckpointError, sniff_format

FORMAT_VERSION = 2          # 1 = the old torch.save pickle (refused; convert-checkpoint reads it without pickle code)
MAGIC_KEY = "tracer_checkpoint"
SUFFIX = ".safetensors"


def save_checkpoint(path: str | Path, *, student, teacher, method, optimizer, step: int, config: dict) -> Path:
    state = {
        "format_version": FORMAT_VERSION,
        "step": step,
        "config": config,
        "student": student.clip.state_dict(),
        "teacher": teacher.state_dict() if teacher is not None else None,
        "method": method.state_dict(),
        "optimizer": optimizer.state_dict() if optimizer is not None else None,
    }
    return write_state(path, state)


def write_state(path: str | Path, state: dict) -> Path:
    """Write ``state`` (tensors + JSON-able values) atomically; a failed write leaves no ``.tmp`` behind."""
    from safetensors.torch import save_file
    path = Path(path)
    if not path.parent.parent.is_dir():   # the run's folder was deleted while it ran: do not recreate it
        raise FileNotFoundError(f"{path.parent.parent}: output folder is gone; checkpoint not written")
    path.parent.mkdir(exist_ok=True)
    tensors: dict[str, torch.Tensor] = {}
    tree = _split(state, "", tensors, set())
    tmp = path.with_suffix(path.suffix + ".tmp")
    try:
        save_file(tensors, str(tmp), metadata={MAGIC_KEY: json.dumps(tree)})
        tmp.replace(path)     # atomic: a killed run never leaves a half-written checkpoint under the real name
    except BaseException:
        tmp.unlink(missing_ok=True)     # e.g. ENOSPC: no partial file left to fill the disk or be mistaken
        raise
    return path


def load_checkpoint(path: str | Path) -> dict:
    """Read a checkpoint written by ``save_checkpoint``; clear errors for missing/corrupt/foreign/old files.

    Never unpickles: old pickle checkpoints are refused with the conversion command.
    """
    from safetensors import safe_open
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{path}: checkpoint file not found")
    kind = sniff_format(path)
    if kind in ("torch-zip", "pickle"):
        raise CheckpointError(old_format_message(path))
    if kind != "safetensors":
        raise CheckpointError(f"{path}: not a TRACER Studio training checkpoint (unrecognised file format; "
                              "checkpoints are safetensors files written by a run)")
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            meta = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as e:
        raise CheckpointError(f"{path}: cannot read checkpoint, the file is corrupt "
                              f"({type(e).__name__}: {str(e)[:200]})") from None
    if MAGIC_KEY not in meta:
        raise CheckpointError(f"{path}: a safetensors weights file, not a TRACER Studio training checkpoint "
                              "(to start from these weights use model.pretrained=<path>)")
    try:
        state = _join(json.loads(meta[MAGIC_KEY]), tensors)
    except (ValueError, KeyError, TypeError) as e:
        raise CheckpointError(f"{path}: corrupt checkpoint metadata ({type(e).__name__}: {str(e)[:200]})") from None
    if not isinstance(state, dict) or state.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(f"{path}: not a TRACER Studio training checkpoint (format_version "
                              f"{state.get('format_version') if isinstance(state, dict) else None!r}, "
                              f"expected {FORMAT_VERSION})")
    _check_parts(path, state)
    return state


def _check_parts(path: Path, state: dict) -> None:
    """The parts the loaders index (analysis.checkpoints.load_checkpoint_bundle, the WiSE curve): a crafted file fails here, clearly."""
    def tensors(d) -> bool:
        return isinstance(d, dict) and all(isinstance(v, torch.Tensor) for v in d.values())
    teacher = state.get("teacher")
    problems = [name for name, ok in (("config", isinstance(state.get("config"), dict)),
                                      ("step", isinstance(state.get("step"), int)),
                                      ("student", tensors(state.get("student"))),
                                      ("teacher", teacher is None or (isinstance(teacher, dict)
                                                                      and tensors(teacher.get("module")))),
                                      ("method", isinstance(state.get("method"), dict))) if not ok]
    if problems:
        raise CheckpointError(f"{path}: corrupt checkpoint: missing or malformed {', '.join(problems)}")


def old_format_message(path: Path) -> str:
    new = path.with_suffix(SUFFIX) if path.suffix != SUFFIX else path.with_name(path.stem + "_converted" + SUFFIX)
    return (f"{path}: old-format checkpoint (a Python pickle written by torch.save). TRACER Studio no longer "
            "opens pickles, because a pickle can run code when it is opened. If you trust where this file "
            f"came from, convert it once with: python -m tracer_core convert-checkpoint {path} {new}")


def convert_checkpoint(old: str | Path, new: str | Path) -> Path:
    """Rewrite an old pickle checkpoint (format 1) in the safe format. Reads it with ``weights_only=True``
    (PyTorch's restricted unpickler: tensors and plain containers only, no code); anything else is refused."""
    old, new = Path(old), Path(new)
    if not old.exists():
        raise CheckpointError(f"{old}: checkpoint file not found")
    if sniff_format(old) == "safetensors":
        load_checkpoint(old)                    # raises for a foreign safetensors file
        raise CheckpointError(f"{old}: already in the safe format, nothing to convert")
    if new.exists():
        raise CheckpointError(f"{new}: exists already; give a new file name")
    try:
        state = torch.load(old, map_location="cpu", weights_only=True)
    except Exception as e:
        raise CheckpointError(f"{old}: not converted: the file holds Python objects beyond tensors and plain "
                              f"containers, which would need arbitrary unpickling ({type(e).__name__}: "
                              f"{str(e)[:200]})") from None
    if not isinstance(state, dict) or state.get("format_version") != 1:
        raise CheckpointError(f"{old}: not an old TRACER Studio training checkpoint (no format_version 1)")
    return write_state(new, {**state, "format_version": FORMAT_VERSION})


# -- the JSON tree <-> tensors split ----------------------------------------------------------------------------

def _split(obj, name: str, tensors: dict, seen: set):
    """JSON-able tree of ``obj`` with tensors moved into ``tensors`` (shared storage is cloned: safetensors
    refuses aliases; ``seen`` holds the storage pointers so far). Dicts with non-string keys (the optimizer's
    ``state`` is keyed by int) keep their key types."""
    if isinstance(obj, torch.Tensor):
        if name in tensors:
            raise ValueError(f"checkpoint entry name {name!r} used twice")
        t = obj.detach().cpu().contiguous()
        if t.numel() and t.untyped_storage().data_ptr() in seen:
            t = t.clone()
        seen.add(t.untyped_storage().data_ptr())
        tensors[name] = t
        return {"__tensor__": name}
    if isinstance(obj, dict):
        if all(isinstance(k, str) for k in obj):
            return {k: _split(v, f"{name}/{k}" if name else k, tensors, seen) for k, v in obj.items()}
        return {"__items__": [[k, _split(v, f"{name}/{k}", tensors, seen)] for k, v in obj.items()]}
    if isinstance(obj, (list, tuple)):
        out = [_split(v, f"{name}/{i}", tensors, seen) for i, v in enumerate(obj)]
        return {"__tuple__": out} if isinstance(obj, tuple) else out
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise TypeError(f"checkpoint entry {name!r}: cannot store a {type(obj).__name__} (tensors and JSON values only)")


def _join(tree, tensors: dict):
    """Inverse of :func:`_split`; a reference to a missing tensor raises KeyError."""
    if isinstance(tree, dict):
        if set(tree) == {"__tensor__"}:
            return tensors[tree["__tensor__"]]
        if set(tree) == {"__items__"}:
            return {(tuple(k) if isinstance(k, list) else k): _join(v, tensors) for k, v in tree["__items__"]}
        if set(tree) == {"__tuple__"}:
            return tuple(_join(v, tensors) for v in tree["__tuple__"])
        return {k: _join(v, tensors) for k, v in tree.items()}
    if isinstance(tree, list):
        return [_join(v, tensors) for v in tree]
    return tree
