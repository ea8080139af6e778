"""FT2B / FSR — "Feed Two Birds with One Scone" (Yuan, Shu, Meng, Xu 2025, arXiv 2509.05328).

RECONSTRUCTION. The paper's method section, equations and hyper-parameters could not be read; this is
the reading of its abstract that ``shared/reference/peer_methods.md`` part A gives ([RECON] A.2, A.3, A.7):

    L = CE(z_theta(x), y)                                            task loss (FT protocol)
      + lambda_F * T^2 KL( p_theta0^T(x~) || p_theta^T(x~) )        function-space proximity to theta_0
      + lambda_C *     KL( sg[p_theta^T(x)] || p_theta^T(x~) )      clean -> perturbed consistency

* z = head(u(phi(x))), the FT head (zero-shot text head, logit scale baked in), trained with the
  image tower; p^T = softmax(z / T).
* theta_0 is a frozen copy of the *pretrained* image tower and the initial head, run under no_grad
  (A.7: "teacher runs under torch.no_grad() in eval mode").
* x~ = one simulated-OOD view per image (``simulated_ood.py``: RandAugment-style ops + Cutout, chosen
  disjoint from the evaluation shift families), shared by both regularisers (A.2: one extra student
  pass in total). Clean and simulated views go through the student as one 2B batch.
* Defaults (A.4): lambda_F = lambda_C = 1, T = 1 (``method_params.ft2b_*``).

Logged: ``ce_loss``, ``fsr_loss`` (lambda_F-weighted), ``consistency_loss`` (lambda_C-weighted) and
the unweighted ``fsr`` / ``consistency``.
"""
from __future__ import annotations

import copy

import torch
import torch.nn.functional as F

from ..losses import classification_loss, consistency_kl, function_space_kl
from .base import Batch, StepOutput
from .classification import CEMethod
from .simulated_ood import simulate_ood


class FT2BMethod(CEMethod):
    name = "ft2b"

    def __init__(self, cfg, student, ctx):
        super().__init__(cfg, student, ctx)
        # theta_0: the pretrained image tower and zero-shot head, frozen (no text tower: FT never uses it)
        self.frozen_visual = copy.deepcopy(student.clip.visual).eval()
        self.frozen_head = copy.deepcopy(self.head).eval()
        for p in list(self.frozen_visual.parameters()) + list(self.frozen_head.parameters()):
            p.requires_grad_(False)

    def simulate(self, images: torch.Tensor) -> torch.Tensor:
        mp = self.cfg.method_params
        return simulate_ood(images, mp.ft2b_ops, mp.ft2b_num_ops, mp.ft2b_magnitude, mp.ft2b_cutout)

    @torch.no_grad()
    def pretrained_logits(self, images: torch.Tensor) -> torch.Tensor:
        """theta_0's class logits (B, C) on images in [0, 1]."""
        x = (images - self.student.mean) / self.student.std
        return self.frozen_head(F.normalize(self.frozen_visual(x), dim=-1))

    def step(self, batch: Batch, step: int, teacher) -> StepOutput:
        mp, b = self.cfg.method_params, batch.images.shape[0]
        with torch.no_grad():
            x_sim = self.simulate(batch.images)                                # (B, 3, H, W)
        feats = self.student.encode_image(torch.cat([batch.images, x_sim]))    # (2B, d): one pass, both views
        z_all = self.head(feats)                                                # (2B, C)
        z, z_sim = z_all[:b], z_all[b:]
        z0_sim = self.pretrained_logits(x_sim)                                  # (B, C), no grad
        fsr = function_space_kl(z0_sim, z_sim, mp.ft2b_temperature)
        cons = consistency_kl(z, z_sim, mp.ft2b_temperature)
        terms = {"ce_loss": classification_loss(z, batch.labels, self.cfg.loss.label_smoothing),
                 "fsr_loss": mp.ft2b_lambda_f * fsr, "consistency_loss": mp.ft2b_lambda_c * cons,
                 "fsr": fsr.detach(), "consistency": cons.detach()}
        with torch.no_grad():
            stats = {("train_accuracy", ""): float((z.argmax(-1) == batch.labels).float().mean()),
                     ("sim_accuracy", ""): float((z_sim.argmax(-1) == batch.labels).float().mean())}
        return StepOutput(terms, stats)
