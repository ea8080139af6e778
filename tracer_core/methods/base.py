"""The shared interface of a fine-tuning method (one module per method, registered by name).

A method turns one batch into named loss terms. The loop owns everything else (optimizer, schedule,
teacher updates, hooks), so adding a method never touches the loop. Three optional hooks let a method
shape its run without owning the loop: ``lr_scale(step)``, ``on_step_end(step)`` and ``finalize()``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch
import torch.nn as nn

from ..config import RunConfig


@dataclass
class Batch:
    images: torch.Tensor   # (B, 3, H, W) float in [0, 1]
    tokens: torch.Tensor   # (B, L) int64 caption tokens (one sampled template per image, FLYP style)
    labels: torch.Tensor   # (B,) int64 class labels


@dataclass
class StepOutput:
    terms: dict[str, torch.Tensor]                          # total = sum of "*_loss" keys
    # logged per step as (name, context) -> value, e.g. ("teacher_student_kl", "img"), ("train_accuracy", "")
    stats: dict[tuple[str, str], float] = field(default_factory=dict)


@dataclass
class MethodContext:
    tokenizer: object
    classnames: list[str]
    templates: list[str]
    device: torch.device
    # (b, d) local rows -> (world*b, d) rows of every torchrun rank, differentiable; identity in one process
    gather: Callable[[torch.Tensor], torch.Tensor] = lambda x: x


class Method:
    """Base class. Subclasses set ``name`` and implement ``step``."""

    name = "base"
    trains = True          # False for evaluation-only methods (zero-shot)

    def __init__(self, cfg: RunConfig, student: nn.Module, ctx: MethodContext):
        self.cfg = cfg
        self.student = student
        self.ctx = ctx

    def extra_modules(self) -> list[nn.Module]:
        """Trainable modules outside the student (e.g. a classification head)."""
        return []

    def trainable_parameters(self) -> list[nn.Parameter]:
        params = [p for p in self.student.parameters() if p.requires_grad]
        for m in self.extra_modules():
            params += [p for p in m.parameters() if p.requires_grad]
        return params

    def step(self, batch: Batch, step: int, teacher) -> StepOutput:
        raise NotImplementedError

    # -- optional loop hooks (generic; the defaults make them no-ops) -----------------------------
    def lr_scale(self, step: int) -> float:
        """Multiplier on the scheduled lr of this step (LP-FT's probe stage uses a larger one)."""
        return 1.0

    def on_step_end(self, step: int) -> None:
        """Called after the optimizer step (and the teacher update), e.g. to merge adapters."""

    def finalize(self) -> None:
        """Called once after the last step, before the final evaluation and checkpoint (WiSE-FT)."""

    def classifier_head(self, classnames: list[str]):
        """A trained head (C, d) -> logits for these classes, or None to use the zero-shot text head."""
        return None

    def state_dict(self) -> dict:
        return {f"extra{i}": m.state_dict() for i, m in enumerate(self.extra_modules())}

    def load_state_dict(self, state: dict) -> None:
        for i, m in enumerate(self.extra_modules()):
            m.load_state_dict(state[f"extra{i}"])


class ZeroShotMethod(Method):
    """Evaluation only: the pretrained model with the class-prompt head."""
    name = "zeroshot"
    trains = False
