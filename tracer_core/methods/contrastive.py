"""FLYP, CaRot and TRACER: one contrastive objective, different weights and teachers (spec §1.4).

    L = L_CLIP + lambda_F ||W_v W_t^T||_F + lambda_OC ||W_v^T W_v - I||_F
        + 1[step > 0] lambda_SD (sum_k alpha_k L_k  if any alpha_k > 0  else  L_SD-basic)
"""
from __future__ import annotations

import torch

from ..losses import (basic_sd_loss, clip_contrastive_loss, clip_logits, cross_fnorm, kd_terms,
                      orthogonality)
from ..metrics.teacher_stats import teacher_student_stats
from .base import Batch, Method, StepOutput


class ContrastiveMethod(Method):
    name = "flyp"

    def step(self, batch: Batch, step: int, teacher) -> StepOutput:
        lc = self.cfg.loss
        f_s, g_s, s_s = self.student(batch.images, batch.tokens)          # (b,d), (b,d), scalar
        # under torchrun: the global batch's features, B = world*b (identity in one process; spec P8)
        f_s, g_s = self.ctx.gather(f_s), self.ctx.gather(g_s)           # (B,d), (B,d)
        terms: dict[str, torch.Tensor] = {
            "clip_loss": clip_contrastive_loss(f_s, g_s, s_s, lc.label_smoothing)}
        terms.update(self._regularizers())
        stats: dict[tuple[str, str], float] = {}
        if teacher is not None and step > 0:
            with torch.no_grad():
                f_t, g_t, s_t = teacher(batch.images, batch.tokens)
                f_t, g_t = self.ctx.gather(f_t), self.ctx.gather(g_t)   # (B,d), (B,d)
            z_s, _ = clip_logits(f_s, g_s, s_s)
            z_t, _ = clip_logits(f_t, g_t, s_t)
            # statistics on the current batch, before this step's teacher update (P18); logging only
            stats = teacher_student_stats(z_t.detach(), z_s.detach())
            if lc.distill_temperature != 1:      # §5.1: also on the tempered teacher Z_T / tau_d (prefix post_temp_)
                tempered = teacher_student_stats(z_t.detach() / lc.distill_temperature, z_s.detach())
                stats.update({(f"post_temp_{n}", c): v for (n, c), v in tempered.items()})
            if lc.lambda_sd > 0:
                terms.update(self._distill(z_t, z_s, (f_s, g_s, s_s), (f_t, g_t, s_t)))
        return StepOutput(terms, stats)

    def _regularizers(self) -> dict[str, torch.Tensor]:
        lc, out = self.cfg.loss, {}
        if lc.lambda_f > 0 or lc.lambda_oc > 0:
            w_v, w_t = self.student.visual_projection(), self.student.text_projection()
            if w_v is None or w_t is None:
                raise ValueError(f"loss.lambda_f / lambda_oc need a projection matrix; model "
                                 f"{self.cfg.model.name!r} has none (use a ViT tower)")
            if lc.lambda_f > 0:
                out["cross_fnorm_loss"] = lc.lambda_f * cross_fnorm(w_v, w_t)
            if lc.lambda_oc > 0:
                out["orth_loss"] = lc.lambda_oc * orthogonality(w_v)
        return out

    def _distill(self, z_t, z_s, student, teacher) -> dict[str, torch.Tensor]:
        lc = self.cfg.loss
        if not lc.any_alpha:   # §4.1 basic bidirectional SD (KD module replaces it when any alpha > 0, P5)
            return {"distill_loss": lc.lambda_sd * basic_sd_loss(z_t, z_s, lc.distill_temperature)}
        alphas = {"crd": lc.alpha_crd, "fd": lc.alpha_fd, "icl": lc.alpha_icl, "cross_kd": lc.alpha_cross_kd}
        raw = kd_terms(student, teacher, alphas)
        out = {f"{k}_loss": lc.lambda_sd * alphas[k] * v for k, v in raw.items()}
        out.update({k: v.detach() for k, v in raw.items()})     # unweighted values, logged only
        return out
