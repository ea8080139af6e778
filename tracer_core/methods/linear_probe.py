"""LP and LP-FT (Kumar et al., ICLR 2022; spec §8, peer_methods.md part D).

Both start from the FT head: a bias-free linear layer initialised to the zero-shot text head, logit
scale baked in (``CEMethod``). LP trains only that head on features of the frozen image tower. LP-FT
runs the same probe for the first ``round(method_params.lp_fraction * train.steps)`` steps, then
fine-tunes image tower + head end to end for the rest, on one cosine schedule.

How the two stages are expressed (one run, one optimizer, one schedule):
* the probe stage computes image features under ``no_grad``: the tower's parameters get no gradient
  (``grad is None``), so AdamW neither updates nor decays them, and the step costs one forward;
* ``lr_scale`` multiplies the scheduled lr by ``method_params.lp_lr_scale`` during the probe: the head
  holds s * e_c (entries ~ s / sqrt(d)), which the full-FT lr would barely move (the reference fits the
  probe to convergence with L-BFGS instead; spec §8);
* at the switch the tower starts to receive gradients; its AdamW moments start from zero there.
"""
from __future__ import annotations

import torch

from ..losses import classification_loss
from .base import Batch, StepOutput
from .classification import CEMethod


class LPMethod(CEMethod):
    """Linear probe: CE on the head over frozen image features, at lr x ``lp_lr_scale``."""

    name = "lp"

    def __init__(self, cfg, student, ctx):
        super().__init__(cfg, student, ctx)
        for p in student.parameters():   # the whole student is frozen: n_trainable reports the truth
            p.requires_grad_(False)

    def trainable_parameters(self) -> list[torch.nn.Parameter]:
        return list(self.head.parameters())

    def lr_scale(self, step: int) -> float:
        return self.cfg.method_params.lp_lr_scale

    def step(self, batch: Batch, step: int, teacher) -> StepOutput:
        return _ce_step(self, batch, probe=True)


class LPFTMethod(CEMethod):
    """LP for the first ``lp_steps`` steps, then FT (image tower + head)."""

    name = "lpft"

    def __init__(self, cfg, student, ctx):
        super().__init__(cfg, student, ctx)
        self.lp_steps = int(round(cfg.method_params.lp_fraction * cfg.train.steps))

    def in_probe_stage(self, step: int) -> bool:
        return step < self.lp_steps

    def lr_scale(self, step: int) -> float:
        return self.cfg.method_params.lp_lr_scale if self.in_probe_stage(step) else 1.0

    def step(self, batch: Batch, step: int, teacher) -> StepOutput:
        out = _ce_step(self, batch, probe=self.in_probe_stage(step))
        out.stats[("lp_stage", "")] = float(self.in_probe_stage(step))
        return out


def _ce_step(method: CEMethod, batch: Batch, probe: bool) -> StepOutput:
    """CE on head(features); ``probe`` computes the features without gradient (frozen tower)."""
    with torch.set_grad_enabled(not probe and torch.is_grad_enabled()):
        feats = method.student.encode_image(batch.images)                 # (B, d) unit rows
    logits = method.head(feats)                                            # (B, C)
    terms = {"ce_loss": classification_loss(logits, batch.labels, method.cfg.loss.label_smoothing)}
    with torch.no_grad():
        stats = {("train_accuracy", ""): float((logits.argmax(-1) == batch.labels).float().mean())}
    return StepOutput(terms, stats)
