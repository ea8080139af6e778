"""Method registry: every fine-tuning strategy is one module with the ``Method`` interface.

    zeroshot  (here)              evaluation only
    ft        classification.py   CE, image tower + zero-shot-initialised head
    lp, lpft  linear_probe.py     head only; head only then FT
    flyp, carot, tracer           contrastive.py (one objective, different weights and teachers)
    l2sp      l2sp.py             FT + lambda ||theta - theta_0||^2
    wiseft    wiseft.py           FT, then theta = (1 - alpha) theta_0 + alpha theta_ft
    ft2b      ft2b.py             FT + function-space KL to theta_0 on simulated OOD + consistency (RECON)
    grace     grace.py            LoRA + PGD + low-rank AWP + Gram-volume alignment
"""
from __future__ import annotations

from .base import Batch, Method, MethodContext, StepOutput
from .classification import CEMethod
from .contrastive import ContrastiveMethod
from .ft2b import FT2BMethod
from .grace import GRACEMethod
from .l2sp import L2SPMethod
from .linear_probe import LPFTMethod, LPMethod
from .wiseft import WiSEFTMethod, curve_summary, wise_curve, wise_ft_interpolate


class ZeroShotMethod(Method):
    """Evaluation only: the pretrained model with the class-prompt head."""
    name = "zeroshot"
    trains = False


_REGISTRY: dict[str, type[Method]] = {
    "zeroshot": ZeroShotMethod,
    "ft": CEMethod,
    "lp": LPMethod,
    "lpft": LPFTMethod,
    "flyp": ContrastiveMethod,
    "l2sp": L2SPMethod,
    "wiseft": WiSEFTMethod,
    "carot": ContrastiveMethod,
    "tracer": ContrastiveMethod,
    "ft2b": FT2BMethod,
    "grace": GRACEMethod,
}


def list_methods() -> list[str]:
    return sorted(_REGISTRY)


def register_method(name: str, cls: type[Method]) -> None:
    _REGISTRY[name] = cls


def create_method(cfg, student, ctx: MethodContext) -> Method:
    if cfg.method not in _REGISTRY:
        raise ValueError(f"method {cfg.method!r} is not implemented yet; available: {', '.join(list_methods())}")
    return _REGISTRY[cfg.method](cfg, student, ctx)


__all__ = ["Batch", "Method", "MethodContext", "StepOutput", "create_method", "curve_summary", "list_methods",
           "register_method", "wise_curve", "wise_ft_interpolate"]
