"""Teacher registry: ``create_teacher(kind, student, **options)``, ``list_teachers()`` and ``KINDS``.

    t = create_teacher("wma", student, total_steps=T, beta=0.5)
    ...optimizer.step(); t.update(student, step)      # step counts from 0
    t.module                                          # the teacher nn.Module (eval mode, no grad)

``KINDS`` is the one list of teacher kinds: the class that implements each, the ``TeacherConfig`` fields its
constructor takes, and its display metadata (label, colours). ``config.TEACHER_KINDS``, the launch form, the
strategy names and the chart colours all read it, so a new kind is its module plus one entry here.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass

# The schedules are pure numpy, imported eagerly so the kernel explorer (and tracer_core.api) never pay
# for torch; the nn.Module-based classes load on first use (PEP 562 module __getattr__).
from .schedules import (beta_kernel, momentum_schedule, snapshot_weights, teacher_profile,
                        update_weights)



@dataclass(frozen=True)
class TeacherKind:
    """One teacher kind. ``target``: "module:Class" inside this package ("" for no teacher); ``options``: the
    TeacherConfig fields passed to the constructor besides total_steps and average_buffers; ``label``: how
    strategy names and legends spell it; ``colours``: the chart palette of its runs (first = main colour)."""
    name: str
    label: str
    target: str
    options: tuple[str, ...]
    colours: tuple[str, ...]
    help: str


KINDS: dict[str, TeacherKind] = {k.name: k for k in (
    TeacherKind("none", "no", "", (), ("#6b6b6b", "#9a9a9a", "#3d3d3d", "#b8b8b8"), "no teacher"),
    TeacherKind("frozen", "frozen", ".base:FrozenTeacher", (), ("#2e9e5b", "#7cc68d", "#1b6b3c"),
                "the pretrained weights θ₀, never updated"),
    TeacherKind("ema", "EMA", ".moving:EMATeacher", ("update_every", "momentum_start", "momentum_end",
                                                     "momentum_warmup"),
                ("#e4572e", "#f29e4c", "#b23a1b", "#f6c28b"), "exponential moving average of the student"),
    TeacherKind("wma", "WMA", ".moving:WMATeacher", ("beta", "update_every"),
                ("#1f5fbf", "#4a90e2", "#0b3d91", "#7fb2f0"), "TRACER's Beta(β, β)-kernel weight average"),
)}
_REGISTRY = {name: k.target for name, k in KINDS.items() if k.target}
_LAZY = {"Teacher": ".base", "FrozenTeacher": ".base", "EMATeacher": ".moving", "WMATeacher": ".moving"}


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(name)


def list_teachers() -> list[str]:
    """The kinds that build a teacher (every kind but "none"), sorted."""
    return sorted(_REGISTRY)


def teacher_kinds() -> tuple[str, ...]:
    """Every value ``teacher.kind`` accepts, "none" first, in registry order."""
    return tuple(KINDS)


def create_teacher(kind: str, student, **options):
    """Build a teacher from the current student weights (call before the first optimizer step)."""
    if kind not in _REGISTRY:
        raise ValueError(f"unknown teacher {kind!r}; available: {', '.join(list_teachers())}")
    if not KINDS[kind].options:    # e.g. frozen: the schedule options of a moving average do not apply
        options = {k: v for k, v in options.items() if k in ("total_steps", "average_buffers")}
    module, cls = _REGISTRY[kind].split(":")
    return getattr(importlib.import_module(module, __name__), cls)(student, **options)


def teacher_from_config(cfg, student, total_steps: int):
    """TeacherConfig -> Teacher (None for kind 'none')."""
    if cfg.kind == "none":
        return None
    opts: dict = {"total_steps": total_steps, "average_buffers": cfg.average_buffers}
    opts.update({field: getattr(cfg, field) for field in KINDS[cfg.kind].options})
    return create_teacher(cfg.kind, student, **opts)


__all__ = ["KINDS", "EMATeacher", "FrozenTeacher", "Teacher", "TeacherKind", "WMATeacher", "beta_kernel",
           "create_teacher", "list_teachers", "teacher_kinds", "momentum_schedule", "snapshot_weights", "teacher_from_config",
           "teacher_profile", "update_weights"]
