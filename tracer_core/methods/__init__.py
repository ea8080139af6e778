"""Method registry: every fine-tuning strategy is one module with the ``Method`` interface."""
from __future__ import annotations

from .base import Batch, Method, MethodContext, StepOutput
from .classification import CEMethod
from .contrastive import ContrastiveMethod


class ZeroShotMethod(Method):
    """Evaluation only: the pretrained model with the class-prompt head."""
    name = "zeroshot"
    trains = False


_REGISTRY: dict[str, type[Method]] = {
    "zeroshot": ZeroShotMethod,
    "ft": CEMethod,
    "flyp": ContrastiveMethod,
    "carot": ContrastiveMethod,
    "tracer": ContrastiveMethod,
}


def list_methods() -> list[str]:
    return sorted(_REGISTRY)


def register_method(name: str, cls: type[Method]) -> None:
    _REGISTRY[name] = cls


def create_method(cfg, student, ctx: MethodContext) -> Method:
    if cfg.method not in _REGISTRY:
        raise ValueError(f"method {cfg.method!r} is not implemented yet; available: {', '.join(list_methods())}")
    return _REGISTRY[cfg.method](cfg, student, ctx)


__all__ = ["Batch", "Method", "MethodContext", "StepOutput", "create_method", "list_methods", "register_method"]
