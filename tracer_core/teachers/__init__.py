"""Teacher registry: ``create_teacher(kind, student, **options)`` and ``list_teachers()``.

    t = create_teacher("wma", student, total_steps=T, beta=0.5)
    ...optimizer.step(); t.update(student, step)      # step counts from 0
    t.module                                          # the teacher nn.Module (eval mode, no grad)
"""
from __future__ import annotations

import importlib

# The schedules are pure numpy, imported eagerly so the kernel explorer (and tracer_core.api) never pay
# for torch; the nn.Module-based classes load on first use (PEP 562 module __getattr__).
from .schedules import (beta_kernel, momentum_schedule, snapshot_weights, teacher_profile,
                        update_weights)

_REGISTRY = {"frozen": ".base:FrozenTeacher", "ema": ".moving:EMATeacher", "wma": ".moving:WMATeacher"}
_LAZY = {"Teacher": ".base", "FrozenTeacher": ".base", "EMATeacher": ".moving", "WMATeacher": ".moving"}


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(name)


def list_teachers() -> list[str]:
    return sorted(_REGISTRY)


def create_teacher(kind: str, student, **options):
    """Build a teacher from the current student weights (call before the first optimizer step)."""
    if kind not in _REGISTRY:
        raise ValueError(f"unknown teacher {kind!r}; available: {', '.join(list_teachers())}")
    if kind == "frozen":
        options = {k: v for k, v in options.items() if k in ("total_steps", "average_buffers")}
    module, cls = _REGISTRY[kind].split(":")
    return getattr(importlib.import_module(module, __name__), cls)(student, **options)


def teacher_from_config(cfg, student, total_steps: int):
    """TeacherConfig -> Teacher (None for kind 'none')."""
    if cfg.kind == "none":
        return None
    opts: dict = {"total_steps": total_steps, "average_buffers": cfg.average_buffers}
    if cfg.kind == "wma":
        opts.update(beta=cfg.beta, update_every=cfg.update_every)
    elif cfg.kind == "ema":
        opts.update(update_every=cfg.update_every, momentum_start=cfg.momentum_start,
                    momentum_end=cfg.momentum_end, momentum_warmup=cfg.momentum_warmup)
    return create_teacher(cfg.kind, student, **opts)


__all__ = ["EMATeacher", "FrozenTeacher", "Teacher", "WMATeacher", "beta_kernel", "create_teacher",
           "list_teachers", "momentum_schedule", "snapshot_weights", "teacher_from_config",
           "teacher_profile", "update_weights"]
