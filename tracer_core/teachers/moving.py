"""EMA (CaRot-style, spec §3.1) and WMA (Beta-kernel, spec §2) teachers."""
from __future__ import annotations

import torch.nn as nn

from .base import Teacher
from .schedules import (beta_kernel, ema_should_update, momentum_schedule, wma_mixing_weight,
                        wma_should_update)


class EMATeacher(Teacher):
    """theta_bar <- m(s) theta_bar + (1 - m(s)) theta, m linear 0.05 -> 0.9 over the first 20 % of steps.

    Evaluated at the *global* step s; with update_every=1 the teacher tracks the student within ~10 steps,
    which is the collapse TRACER is about.
    """
    kind = "ema"

    def __init__(self, student: nn.Module, total_steps: int, update_every: int = 1,
                 momentum_start: float = 0.05, momentum_end: float = 0.9, momentum_warmup: float = 0.2,
                 average_buffers: bool = False):
        super().__init__(student, total_steps, average_buffers)
        self.update_every = int(update_every)
        self.momentum_start, self.momentum_end = float(momentum_start), float(momentum_end)
        self.momentum_warmup = float(momentum_warmup)

    def momentum(self, step: int) -> float:
        return momentum_schedule(step, self.total_steps, self.momentum_start, self.momentum_end,
                                 self.momentum_warmup)

    def mixing_weight(self, step: int) -> float | None:
        if not ema_should_update(step, self.total_steps, self.update_every):
            return None
        return 1.0 - self.momentum(step)

    def extra_state(self) -> dict:
        return {"update_every": self.update_every, "momentum_start": self.momentum_start,
                "momentum_end": self.momentum_end, "momentum_warmup": self.momentum_warmup}

    def load_extra_state(self, state: dict) -> None:
        self.update_every = int(state["update_every"])
        self.momentum_start, self.momentum_end = state["momentum_start"], state["momentum_end"]
        self.momentum_warmup = state["momentum_warmup"]


class WMATeacher(Teacher):
    """Weighted moving average with Beta(beta, beta) kernel weights over the update count n (P1).

    State: n (updates so far) and S = sum_{j<=n} kappa(j), starting at n = 0, S = kappa(0) (theta_0 =
    the student at construction). After n updates theta_bar = sum_j kappa(j) theta^(j) / sum_j kappa(j).
    """
    kind = "wma"

    def __init__(self, student: nn.Module, total_steps: int, beta: float = 0.5, update_every: int = 1,
                 average_buffers: bool = False):
        super().__init__(student, total_steps, average_buffers)
        self.beta = float(beta)
        self.update_every = int(update_every)
        self.running_sum = beta_kernel(0, self.total_steps, self.beta)   # float64 Python scalar

    def mixing_weight(self, step: int) -> float | None:
        if not wma_should_update(step, self.total_steps, self.update_every):
            return None
        omega, self.running_sum = wma_mixing_weight(self.num_updates + 1, self.total_steps, self.beta,
                                                    self.running_sum)
        return omega

    def extra_state(self) -> dict:
        return {"beta": self.beta, "update_every": self.update_every, "running_sum": self.running_sum}

    def load_extra_state(self, state: dict) -> None:
        self.beta = float(state["beta"])
        self.update_every = int(state["update_every"])
        self.running_sum = float(state["running_sum"])
