"""L2-SP (Li, Grandvalet & Davoine, ICML 2018; peer_methods.md part D): FT + a pull to the start.

    L = CE(head(u(phi_theta(x))), y) + lambda_l2sp * sum_k ||theta_k - theta0_k||^2

over every trainable tensor of the FT protocol (image tower + head). The original also decays a *new*
head to zero with a separate beta; here the head is not new (it starts as the zero-shot text head), so
it is anchored to that start like the backbone. ``loss.lambda_l2sp`` is the weight (0 logs the
distance without optimising it). Logged: ``l2sp_loss`` (weighted) and ``l2sp`` (the raw distance).
"""
from __future__ import annotations

from ..losses import l2sp
from .base import Batch, StepOutput
from .classification import CEMethod


class L2SPMethod(CEMethod):
    name = "l2sp"

    def __init__(self, cfg, student, ctx):
        super().__init__(cfg, student, ctx)
        # theta_0: detached copies taken before any optimizer step, aligned with trainable_parameters()
        self.anchors = [p.detach().clone() for p in self.trainable_parameters()]

    def step(self, batch: Batch, step: int, teacher) -> StepOutput:
        out = super().step(batch, step, teacher)
        dist = l2sp(self.trainable_parameters(), self.anchors)          # scalar sum of squares
        out.terms["l2sp_loss"] = self.cfg.loss.lambda_l2sp * dist
        out.terms["l2sp"] = dist.detach()
        return out
