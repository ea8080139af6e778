"""Self-distillation terms (spec §4). Teacher tensors are expected without grad.

Notation: F, G (B,d) unit image/text features, s = exp'd logit scale, Z = s F G^T, Z^T its transpose.
KL_bm(P||Q) = (1/B) sum_i sum_j P_ij (log P_ij - log Q_ij)  (torch 'batchmean').
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def _kl_bm(teacher_logits: torch.Tensor, student_logits: torch.Tensor) -> torch.Tensor:
    """KL_bm(softmax(teacher) || softmax(student)), batchmean over rows."""
    return F.kl_div(F.log_softmax(student_logits, dim=-1), F.log_softmax(teacher_logits, dim=-1),
                    reduction="batchmean", log_target=True)


def _soft_ce(teacher_logits: torch.Tensor, student_logits: torch.Tensor) -> torch.Tensor:
    """(1/B) sum_i -sum_j softmax(teacher)_ij log softmax(student)_ij."""
    p = F.softmax(teacher_logits, dim=-1)
    return -(p * F.log_softmax(student_logits, dim=-1)).sum(dim=-1).mean()


def basic_sd_loss(z_t: torch.Tensor, z_s: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """Spec §4.1: L = softCE(Z_T/tau, Z_S) + softCE(Z_T^T/tau, Z_S^T); directions *summed*, no tau^2,
    student logits not divided by tau. z_t, z_s: (B,B) image->text logits."""
    return _soft_ce(z_t / temperature, z_s) + _soft_ce(z_t.t() / temperature, z_s.t())


def crd_loss(z_t: torch.Tensor, z_s: torch.Tensor) -> torch.Tensor:
    """CRD = 1/2 [KL_bm(softmax(Z_T)||softmax(Z_S)) + KL_bm(softmax(Z_T^T)||softmax(Z_S^T))]."""
    return 0.5 * (_kl_bm(z_t, z_s) + _kl_bm(z_t.t(), z_s.t()))


def fd_loss(f_s, g_s, f_t, g_t) -> torch.Tensor:
    """FD = MSE_mean(F_S, F_T) + MSE_mean(G_S, G_T): mean over B*d elements (why alpha_fd ~ 2000)."""
    return F.mse_loss(f_s, f_t) + F.mse_loss(g_s, g_t)


def icl_loss(f_s, g_s, s_s, f_t, g_t) -> torch.Tensor:
    """ICL = 1/2 [CE(s_S F_S G_T^T, I) + CE(s_S G_S F_T^T, I)]: student image vs teacher text and
    student text vs teacher image, with the student's scale."""
    target = torch.arange(f_s.shape[0], device=f_s.device)
    return 0.5 * (F.cross_entropy(s_s * f_s @ g_t.t(), target) + F.cross_entropy(s_s * g_s @ f_t.t(), target))


def cross_kd_loss(f_s, g_s, s_s, f_t, g_t, s_t) -> torch.Tensor:
    """Cross-KD = 1/2 [KL_bm(softmax(Z_T)||softmax(s_S F_S G_T^T)) + KL_bm(softmax(Z_T^T)||softmax(s_S G_S F_T^T))]."""
    z_t = s_t * f_t @ g_t.t()
    return 0.5 * (_kl_bm(z_t, s_s * f_s @ g_t.t()) + _kl_bm(z_t.t(), s_s * g_s @ f_t.t()))


def kd_terms(student: tuple, teacher: tuple, alphas: dict[str, float]) -> dict[str, torch.Tensor]:
    """Multi-perspective KD (spec §4.2). student/teacher = (F, G, s). Returns the *unweighted* terms
    whose alpha > 0, keyed crd / fd / icl / cross_kd."""
    f_s, g_s, s_s = student
    f_t, g_t, s_t = teacher
    out: dict[str, torch.Tensor] = {}
    if alphas.get("crd", 0) > 0:
        out["crd"] = crd_loss(s_t * f_t @ g_t.t(), s_s * f_s @ g_s.t())
    if alphas.get("fd", 0) > 0:
        out["fd"] = fd_loss(f_s, g_s, f_t, g_t)
    if alphas.get("icl", 0) > 0:
        out["icl"] = icl_loss(f_s, g_s, s_s, f_t, g_t)
    if alphas.get("cross_kd", 0) > 0:
        out["cross_kd"] = cross_kd_loss(f_s, g_s, s_s, f_t, g_t, s_t)
    return out
