"""Read weight files with errors a user can act on (file name + what is wrong)."""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn as nn


class CheckpointError(ValueError):
    """A checkpoint is missing, unreadable or does not fit the model; the message names the file."""


def sniff_format(path: Path) -> str:
    """"safetensors", "torch-zip" (torch.save since 1.6), "pickle" (older torch.save / raw pickle) or "unknown",
    from the first bytes, so a file is never handed to the wrong reader because of its name."""
    with open(path, "rb") as f:
        head = f.read(9)
    if head[:4] == b"PK\x03\x04":
        return "torch-zip"
    # safetensors first: its u64 little-endian header length may well start with the byte 0x80 (a header of
    # 128 + 256k bytes), which is also pickle's PROTO opcode; the '{' at byte 8 and a sane length decide
    if len(head) == 9 and head[8:9] == b"{" and 2 <= int.from_bytes(head[:8], "little") <= 100_000_000:
        return "safetensors"
    if head[:1] == b"\x80":
        return "pickle"
    return "unknown"


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{path}: checkpoint file not found")
    try:
        if path.suffix == ".safetensors" or sniff_format(path) == "safetensors":
            from safetensors.torch import load_file
            sd = _student_of_training_checkpoint(load_file(str(path)))
        else:   # PyTorch's restricted unpickler: tensors and plain containers only, never arbitrary code
            sd = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise CheckpointError(f"{path}: cannot read checkpoint, the file is corrupt or not a weights file "
                              f"({type(e).__name__}: {str(e)[:200]})") from None
    if isinstance(sd, dict):
        for key in ("state_dict", "student", "model"):   # open_clip / our training checkpoints
            if key in sd and isinstance(sd[key], dict):
                sd = sd[key]
                break
    if not isinstance(sd, dict) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise CheckpointError(f"{path}: does not hold a state dict of tensors")
    # strip DataParallel/DDP and our ClipModel wrapper prefixes so every format loads into an open_clip model
    out = {}
    for k, v in sd.items():
        for prefix in ("module.", "clip."):
            if k.startswith(prefix):
                k = k[len(prefix):]
        out[k] = v
    return out


def _student_of_training_checkpoint(sd: dict) -> dict:
    """A training checkpoint (training/checkpoint.py) names its tensors ``student/<key>``, ``teacher/...``;
    as ``model.pretrained`` it means the student's weights. Plain weight files pass through."""
    student = {k[len("student/"):]: v for k, v in sd.items() if k.startswith("student/")}
    return student or sd


def load_state_dict_file(model: nn.Module, path: str | Path) -> None:
    """Load ``path`` into ``model`` strictly; mismatched keys or shapes raise CheckpointError."""
    sd = read_state_dict(path)
    own = model.state_dict()
    missing = [k for k in own if k not in sd]
    unexpected = [k for k in sd if k not in own]
    bad_shapes = [f"{k}: file {tuple(sd[k].shape)} vs model {tuple(own[k].shape)}"
                  for k in own if k in sd and sd[k].shape != own[k].shape]
    if missing or unexpected or bad_shapes:
        parts = []
        if bad_shapes:
            parts.append("shape mismatch " + "; ".join(bad_shapes[:3]))
        if missing:
            parts.append(f"{len(missing)} missing keys (e.g. {missing[0]})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected keys (e.g. {unexpected[0]})")
        raise CheckpointError(f"{path}: checkpoint does not match the model architecture: " + ", ".join(parts))
    model.load_state_dict({k: v.to(own[k].dtype) for k, v in sd.items()})
