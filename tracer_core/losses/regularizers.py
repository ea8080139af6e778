"""Weight-space regularisers: CaRot's (spec §1.3, plain Frobenius norms) and L2-SP."""
from __future__ import annotations

from typing import Iterable

import torch


def cross_fnorm(w_v: torch.Tensor, w_t: torch.Tensor) -> torch.Tensor:
    """||W_v W_t^T||_F with W_v (width_v, d) = visual.proj and W_t (width_t, d) = text_projection."""
    return torch.linalg.matrix_norm(w_v @ w_t.t(), ord="fro")


def orthogonality(w_v: torch.Tensor) -> torch.Tensor:
    """||W_v^T W_v - I_d||_F (CaRot's orthogonality constraint), W_v (width_v, d)."""
    d = w_v.shape[1]
    return torch.linalg.matrix_norm(w_v.t() @ w_v - torch.eye(d, device=w_v.device, dtype=w_v.dtype), ord="fro")


def l2sp(params: Iterable[torch.Tensor], anchors: Iterable[torch.Tensor]) -> torch.Tensor:
    """sum_k ||theta_k - theta0_k||^2 over trainable parameters (L2-SP, Li et al. 2018)."""
    diffs = [(p - a).pow(2).sum() for p, a in zip(params, anchors)]
    return torch.stack(diffs).sum()
