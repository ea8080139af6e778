"""Device, autocast and grad-scaler choices of a run: their own module because both setup.py and the preflight
checks (which setup.py imports) need them."""
from __future__ import annotations

import contextlib

import torch


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"train.device={name!r} but no CUDA device is available; use train.device=cpu")
    return torch.device(name)


def make_autocast(device: torch.device, precision: str):
    """bf16 autocast on CUDA by default, fp32 on CPU (weights always stay fp32); fp16 autocast on request
    (it needs the GradScaler of :func:`make_scaler`: fp16 gradients underflow, bf16 ones do not)."""
    resolved = precision if precision != "auto" else ("bf16" if device.type == "cuda" else "fp32")
    if resolved in ("bf16", "fp16"):
        dtype = torch.bfloat16 if resolved == "bf16" else torch.float16
        return resolved, lambda: torch.autocast(device.type, dtype=dtype)
    return resolved, contextlib.nullcontext


def make_scaler(device: torch.device, precision: str):
    """A GradScaler for fp16 autocast (loss scaling, inf/NaN steps skipped), None otherwise."""
    return torch.amp.GradScaler(device.type) if precision == "fp16" else None
