"""Teacher = a deep copy of the student, kept in eval mode, updated in place after the optimizer step."""
from __future__ import annotations

import copy

import torch
import torch.nn as nn


class Teacher:
    """Base teacher. Subclasses implement ``mixing_weight(step) -> float | None`` (None = no update).

    update(student, step) mixes ``teacher <- (1 - w) teacher + w student`` over all parameters with one
    fused ``torch._foreach_lerp_`` call (fp32; late WMA weights are ~1/T, spec P16). Buffers are mixed
    only when ``average_buffers`` (the reference keeps construction-time buffers, P3).
    """

    kind = "base"

    def __init__(self, student: nn.Module, total_steps: int = 1, average_buffers: bool = False):
        # Deep copy (pitfall P2): the teacher must never alias the student's parameters.
        self.module = copy.deepcopy(student).eval()
        for p in self.module.parameters():
            p.requires_grad_(False)
        self.total_steps = int(total_steps)
        self.average_buffers = bool(average_buffers)
        self.num_updates = 0
        self.last_weight = 0.0   # the student's weight in the last update (logged as teacher_weight)

    def __call__(self, *args, **kwargs):
        return self.module(*args, **kwargs)

    def mixing_weight(self, step: int) -> float | None:
        return None

    @torch.no_grad()
    def update(self, student: nn.Module, step: int) -> bool:
        """Call after the optimizer step of global step ``step`` (counting from 0). Returns True if updated."""
        w = self.mixing_weight(step)
        if w is None:
            return False
        t_params = list(self.module.parameters())
        s_params = list(student.parameters())
        if len(t_params) != len(s_params):
            raise RuntimeError("teacher and student parameter lists differ (was the student rebuilt after "
                               "the teacher was created?)")
        torch._foreach_lerp_(t_params, [p.detach() for p in s_params], float(w))
        if self.average_buffers:
            pairs = [(tb, sb) for tb, sb in zip(self.module.buffers(), student.buffers())
                     if tb.is_floating_point()]
            if pairs:
                torch._foreach_lerp_([a for a, _ in pairs], [b.detach() for _, b in pairs], float(w))
        self.num_updates += 1
        self.last_weight = float(w)
        return True

    def to(self, device) -> "Teacher":
        self.module.to(device)
        return self

    # -- state -----------------------------------------------------------------------------------
    def extra_state(self) -> dict:
        return {}

    def load_extra_state(self, state: dict) -> None:
        pass

    def state_dict(self) -> dict:
        return {"kind": self.kind, "module": self.module.state_dict(), "num_updates": self.num_updates,
                "total_steps": self.total_steps, "last_weight": self.last_weight, **self.extra_state()}

    def load_state_dict(self, state: dict) -> None:
        if state.get("kind") != self.kind:
            raise ValueError(f"teacher state is for {state.get('kind')!r}, not {self.kind!r}")
        self.module.load_state_dict(state["module"])
        self.num_updates = int(state["num_updates"])
        self.total_steps = int(state["total_steps"])
        self.last_weight = float(state.get("last_weight", 0.0))
        self.load_extra_state(state)


class FrozenTeacher(Teacher):
    """The pretrained weights, never updated."""
    kind = "frozen"
