"""Method registry: every fine-tuning strategy is one module with the ``Method`` interface (methods/base.py).

    zeroshot  base.py             evaluation only
    ft        classification.py   CE, image tower + zero-shot-initialised head
    lp, lpft  linear_probe.py     head only; head only then FT
    flyp, carot, tracer           contrastive.py (one objective, different weights and teachers)
    l2sp      l2sp.py             FT + lambda ||theta - theta_0||^2
    wiseft    wiseft.py           FT, then theta = (1 - alpha) theta_0 + alpha theta_ft
    ft2b      ft2b.py             FT + function-space KL to theta_0 on simulated OOD + consistency (RECON)
    grace     grace.py            LoRA + PGD + low-rank AWP + Gram-volume alignment

``REGISTRY`` names each method's class ("module:Class") and its display label. This module imports no torch:
``config.METHODS`` is read from it, and the classes load when :func:`create_method` builds one.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass


@dataclass(frozen=True)
class MethodInfo:
    name: str
    label: str        # how strategy names, tables and legends spell the method
    target: str       # "module:Class" inside this package


REGISTRY: dict[str, MethodInfo] = {m.name: m for m in (
    MethodInfo("zeroshot", "Zero-shot", ".base:ZeroShotMethod"),
    MethodInfo("ft", "FT", ".classification:CEMethod"),
    MethodInfo("lp", "LP", ".linear_probe:LPMethod"),
    MethodInfo("lpft", "LP-FT", ".linear_probe:LPFTMethod"),
    MethodInfo("flyp", "FLYP", ".contrastive:ContrastiveMethod"),
    MethodInfo("l2sp", "L2-SP", ".l2sp:L2SPMethod"),
    MethodInfo("carot", "CaRot", ".contrastive:ContrastiveMethod"),
    MethodInfo("tracer", "TRACER", ".contrastive:ContrastiveMethod"),
    MethodInfo("ft2b", "FT2B", ".ft2b:FT2BMethod"),
    MethodInfo("grace", "GRACE", ".grace:GRACEMethod"),
    MethodInfo("wiseft", "WiSE-FT", ".wiseft:WiSEFTMethod"),
)}


def method_names() -> tuple[str, ...]:
    """Every value ``method`` accepts, in registry order (the launch form's order)."""
    return tuple(REGISTRY)


def list_methods() -> list[str]:
    return sorted(REGISTRY)


def method_class(name: str):
    """The Method subclass registered as ``name`` (imports its module, hence torch)."""
    if name not in REGISTRY:
        raise ValueError(f"method {name!r} is not implemented yet; available: {', '.join(list_methods())}")
    module, cls = REGISTRY[name].target.split(":")
    return getattr(importlib.import_module(module, __name__), cls)


def create_method(cfg, student, ctx):
    """RunConfig + student + MethodContext -> the run's Method."""
    return method_class(cfg.method)(cfg, student, ctx)


__all__ = ["REGISTRY", "MethodInfo", "create_method", "list_methods", "method_class", "method_names"]
