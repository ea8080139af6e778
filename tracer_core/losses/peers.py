"""Loss terms of the peer methods (peer_methods.md): FT2B's two regularisers and GRACE's Gram volume.

Class logits z (B, C); p^T = softmax(z / T); KL(P||Q) = (1/B) sum_i sum_c P_ic (log P_ic - log Q_ic).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def _kl_bm(target_logits: torch.Tensor, logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """KL(softmax(target / T) || softmax(logits / T)), batchmean over rows."""
    return F.kl_div(F.log_softmax(logits / temperature, dim=-1), F.log_softmax(target_logits / temperature, dim=-1),
                    reduction="batchmean", log_target=True)


def function_space_kl(z_pretrained: torch.Tensor, z: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """FT2B's R_F = T^2 KL(p_theta0^T(x~) || p_theta^T(x~)) on simulated-OOD inputs (A.2, RECON).
    z_pretrained: frozen theta_0 logits (no grad), z: the student's, both (B, C) on the same x~."""
    return temperature ** 2 * _kl_bm(z_pretrained.detach(), z, temperature)


def consistency_kl(z_clean: torch.Tensor, z_perturbed: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """FT2B's R_C = KL(sg[p_theta^T(x)] || p_theta^T(x~)) (A.2, RECON): the clean view is the target."""
    return _kl_bm(z_clean.detach(), z_perturbed, temperature)


def gram_volume(f_a: torch.Tensor, f_b: torch.Tensor, f_c: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """GRACE's L_GV = mean_i sqrt(det(G_i + eps I)) for the 3x3 Gram matrix of three unit vectors (B.3).

    Closed form (B.7): with cosines a = <f_a, f_b>, b = <f_a, f_c>, c = <f_b, f_c> and diagonal
    1 + eps, det = (1+eps)^3 + 2abc - (1+eps)(a^2 + b^2 + c^2). It is ~0 when the three features
    coincide and grows as they spread. sqrt(max(det, 0) + 1e-12) keeps the gradient finite.
    f_*: (B, d) L2-normalised rows.
    """
    dt = torch.promote_types(f_a.dtype, torch.float32)       # det is a small difference of O(1) terms: no bf16
    f_a, f_b, f_c = f_a.to(dt), f_b.to(dt), f_c.to(dt)
    a = (f_a * f_b).sum(-1)
    b = (f_a * f_c).sum(-1)
    c = (f_b * f_c).sum(-1)
    d = 1.0 + eps
    det = d ** 3 + 2 * a * b * c - d * (a * a + b * b + c * c)                # (B,)
    return torch.sqrt(det.clamp_min(0.0) + 1e-12).mean()
