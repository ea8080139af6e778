"""GRACE (Chopra et al., CVPR 2026): curvature-adaptive low-rank AWP + Gram-volume feature alignment.

Reconstructed from ``shared/reference/peer_methods.md`` part B (no official code; two paper notes and an
unofficial re-implementation). The objective (Eq. 4):

    L = CE(z_theta(x), y)                                         task loss, clean inputs
      + lambda_LAR * CE(z_{W_pert(theta, Delta*)}(x_adv), y)      worst-case input AND weights (LAR-AWP)
      + lambda_GV  * mean_i sqrt(det Gram(f_ID, f_Adv, f_AWP))     feature-manifold alignment

* theta: LoRA factors on q/k/v/out of the vision tower (B.2); backbone, logit scale and the zero-shot
  class head (scale baked in, as FT's initial head) stay frozen. Only the LoRA factors are optimised.
* x_adv: PGD under L_inf (radius eps, step alpha, random start, projection onto the eps-ball and
  [0, 1] in pixel space) on the current model's CE (B.3 item 2).
* Delta*: ``lowrank.awp_perturbation`` (T_AWP normalised ascent steps in a rank-masked low-rank
  subspace, ||Delta_u||_F <= rho ||W_0,u||_F), a constant for the outer gradient (as AWP/SAM).
* AWP ranks: every K steps a curvature EMA h_u <- beta h_u + (1-beta) n_v mean(g_u^2) of the clean CE
  gradient at the adapted weights (Eqs. 28-29); percentile bands give ranks {0, r_max/2, r_max}.
* L_GV: f_ID (clean, theta) is the stop-grad anchor; gradients flow into f_Adv and f_AWP (B.7, and
  unlike [reimpl], whose GV term has no gradient at all).

Choices where the sources are silent (all ``method_params.grace_*``): lambda_LAR = lambda_GV = 1,
rho = 5e-3 relative, T_AWP = 1, LoRA alpha = rank (scale 1), AWP basis A_u resampled every step, the
curvature taken on the adapted weights W (paper Eq. 28) rather than the LoRA factors ([reimpl]).
Tiny-model settings from B.7: rank 8, r_AWP,max 2, PGD 3 steps (paper 10), K = max(50, T/20).

The LoRA delta is merged into the student after every optimizer step (``on_step_end``), so evaluation
and checkpoints see the merged model, as the paper deploys it (no inference overhead).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.func import functional_call

from ..losses import classification_loss, gram_volume
from .base import Batch, StepOutput
from .classification import CEMethod
from .lowrank import LoRA, assign_ranks, awp_perturbation, curvature_scores, find_units, merged_weights


class GRACEMethod(CEMethod):
    name = "grace"

    def __init__(self, cfg, student, ctx):
        super().__init__(cfg, student, ctx)
        mp = cfg.method_params
        for p in list(student.parameters()) + list(self.head.parameters()):
            p.requires_grad_(False)                       # frozen backbone and head: LoRA only
        self.visual = student.clip.visual
        self.units = find_units(self.visual)
        params = dict(self.visual.named_parameters())
        self.base = {u.key: params[u.key].detach().clone() for u in self.units}     # W_0 per adapted key
        self.lora = LoRA(self.units, mp.grace_lora_rank, mp.grace_lora_alpha).to(ctx.device)
        self.radii = [mp.grace_awp_rho * float(self.base[u.key][u.start:u.stop].norm()) for u in self.units]
        self.ranks = [0] * len(self.units)                 # python copy of lora.awp_ranks (no syncs)
        self.every = mp.grace_curvature_every or max(50, cfg.train.steps // 20)

    def extra_modules(self):
        return [self.head, self.lora]

    def trainable_parameters(self):
        return list(self.lora.parameters())

    # -- forward passes through the tower with given weights ----------------------------------------
    def features(self, images: torch.Tensor, weights: dict) -> torch.Tensor:
        """(N, 3, H, W) in [0, 1] -> (N, d) unit features with the adapted parameters replaced."""
        x = (images - self.student.mean) / self.student.std
        return F.normalize(functional_call(self.visual, weights, (x,)), dim=-1)

    def ce(self, images, labels, weights) -> torch.Tensor:
        return F.cross_entropy(self.head(self.features(images, weights)), labels)

    def pgd(self, images: torch.Tensor, labels: torch.Tensor, weights: dict) -> torch.Tensor:
        """L_inf PGD with a random start; weights detached, so only the input gets gradients."""
        mp = self.cfg.method_params
        eps, step = mp.grace_pgd_eps, mp.grace_pgd_step
        x_adv = (images + (torch.rand_like(images) * 2 - 1) * eps).clamp(0, 1)
        for _ in range(mp.grace_pgd_steps):
            x_adv.requires_grad_(True)
            with torch.enable_grad():
                grad, = torch.autograd.grad(self.ce(x_adv, labels, weights), x_adv)
            x_adv = x_adv.detach() + step * grad.sign()
            x_adv = torch.min(torch.max(x_adv, images - eps), images + eps).clamp(0, 1)
        return x_adv.detach()

    @torch.no_grad()
    def refresh_curvature(self, images: torch.Tensor, labels: torch.Tensor) -> None:
        """Eqs. 28-29 on this batch, then the percentile ranks (one extra forward + backward)."""
        mp = self.cfg.method_params
        leaves = {k: v.detach().requires_grad_(True) for k, v in merged_weights(self.base, self.units, self.lora).items()}
        with torch.enable_grad():
            grads = torch.autograd.grad(self.ce(images, labels, leaves), list(leaves.values()))
        h_hat = curvature_scores(dict(zip(leaves, grads)), self.units, images.shape[0])
        beta = mp.grace_curvature_beta
        self.lora.curvature.mul_(beta).add_((1 - beta) * h_hat)
        self.lora.awp_ranks.copy_(assign_ranks(self.lora.curvature, mp.grace_awp_rank, mp.grace_rank_percentile))
        self.ranks = [int(r) for r in self.lora.awp_ranks.tolist()]

    def step(self, batch: Batch, step: int, teacher) -> StepOutput:
        mp, x, y = self.cfg.method_params, batch.images, batch.labels
        b = x.shape[0]
        if step % self.every == 0:
            self.refresh_curvature(x, y)
        w = merged_weights(self.base, self.units, self.lora)                 # {key: W}, grad to LoRA
        w_d = {k: v.detach() for k, v in w.items()}
        x_adv = self.pgd(x, y, w_d)                                           # (B, 3, H, W)
        f = self.features(torch.cat([x, x_adv]), w)                           # (2B, d): clean + adv, one pass
        f_id, f_adv = f[:b], f[b:]
        delta = awp_perturbation(lambda ww: self.ce(x_adv, y, ww), w_d, self.units, self.ranks,
                                 mp.grace_awp_rank, self.radii, mp.grace_awp_steps)
        f_awp = self.features(x_adv, {k: w[k] + delta[k] for k in w})        # (B, d) at W_pert
        z_id, z_awp = self.head(f_id), self.head(f_awp)                       # (B, C)
        lar = F.cross_entropy(z_awp, y)
        gv = gram_volume(f_id.detach(), f_adv, f_awp, mp.grace_gram_eps)
        terms = {"ce_loss": classification_loss(z_id, y, self.cfg.loss.label_smoothing),
                 "lar_awp_loss": mp.grace_lambda_lar * lar, "gram_volume_loss": mp.grace_lambda_gv * gv,
                 "lar_awp": lar.detach(), "gram_volume": gv.detach()}
        with torch.no_grad():
            stats = {("train_accuracy", ""): float((z_id.argmax(-1) == y).float().mean()),
                     ("adv_accuracy", ""): float((self.head(f_adv).argmax(-1) == y).float().mean()),
                     ("awp_rank_mean", ""): sum(self.ranks) / len(self.ranks)}
        return StepOutput(terms, stats)

    @torch.no_grad()
    def on_step_end(self, step: int) -> None:
        """Merge W_0 + LoRA delta into the student so evaluation and checkpoints see the adapted model."""
        params = dict(self.visual.named_parameters())
        for key, value in merged_weights(self.base, self.units, self.lora).items():
            params[key].copy_(value)
