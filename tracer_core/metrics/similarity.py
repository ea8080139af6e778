r"""Representation similarity: linear HSIC, linear CKA (biased and debiased) and SVCCA.

Pure functions over feature matrices; rows are examples, columns are features. ``X`` is ``(n, p)`` and ``Y`` is
``(n, q)`` with the **same n examples in the same order**. Everything is computed in float64 and returned as a
Python float. Only ``torch`` and ``math`` are imported; collecting features (layer taps) happens elsewhere.

Reference: ``tracer_algorithm.md`` section 9.2 (``spatial:tools/checkpoint_arch_analysis.py``). That tool's
``unbiased=True`` flag is *not* the unbiased HSIC estimator (it re-centres already-centred data and gives the
plain CKA); the real debiased estimator is :func:`linear_cka_debiased` here.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = ["centre", "centred_svd", "hsic_linear", "linear_cka", "linear_cka_debiased", "svcca", "svcca_from_svds"]


def _as_pair(X: Tensor, Y: Tensor, min_n: int = 2) -> tuple[Tensor, Tensor]:
    """Validate ``(n, p)``, ``(n, q)`` and return float64 copies; 1-D inputs become ``(n, 1)``."""
    X = torch.as_tensor(X).detach()
    Y = torch.as_tensor(Y).detach()
    X = X[:, None] if X.ndim == 1 else X
    Y = Y[:, None] if Y.ndim == 1 else Y
    if X.ndim != 2 or Y.ndim != 2:
        raise ValueError(f"expected 2-D feature matrices, got {tuple(X.shape)} and {tuple(Y.shape)}")
    if X.shape[0] != Y.shape[0]:
        raise ValueError(f"X and Y must have the same number of rows, got {X.shape[0]} and {Y.shape[0]}")
    if X.shape[0] < min_n:
        raise ValueError(f"need at least {min_n} examples, got {X.shape[0]}")
    return X.to(torch.float64), Y.to(X.device, torch.float64)


def centre(X: Tensor) -> Tensor:
    r"""Column-centre: :math:`\tilde X = X - \mathbf 1 \bar x^\top = HX`, :math:`H = I_n - \frac1n \mathbf 1\mathbf 1^\top`.

    ``(n, p) -> (n, p)``.
    """
    return X - X.mean(dim=0, keepdim=True)


def _cross_sq_frob(A: Tensor, B: Tensor) -> Tensor:
    r""":math:`\|A^\top B\|_F^2 = \operatorname{tr}(AA^\top BB^\top)` for ``(n, p)``, ``(n, q)``.

    Uses the ``p x q`` feature-space product, or the ``n x n`` Gram form when that is cheaper (``n`` small,
    features wide).
    """
    n, p, q = A.shape[0], A.shape[1], B.shape[1]
    if n * (p + q) < p * q:
        return ((A @ A.T) * (B @ B.T)).sum()
    return (A.T @ B).pow(2).sum()


def hsic_linear(X: Tensor, Y: Tensor, unbiased: bool = False) -> float:
    r"""HSIC with linear kernels :math:`K = XX^\top`, :math:`L = YY^\top`. ``X (n, p)``, ``Y (n, q)``.

    Biased (Gretton et al. 2005), :math:`H` the centring matrix:

    .. math:: \text{HSIC}_b = \frac{\operatorname{tr}(KHLH)}{(n-1)^2} = \frac{\|\tilde X^\top \tilde Y\|_F^2}{(n-1)^2}

    Unbiased (Song et al. 2012; used by Nguyen et al. 2021 for "debiased CKA"), :math:`\hat K, \hat L` = K, L
    with zeroed diagonals, :math:`n > 3`:

    .. math::
        \text{HSIC}_u = \frac{1}{n(n-3)}\Big[\operatorname{tr}(\hat K\hat L)
            + \frac{\mathbf 1^\top\hat K\mathbf 1\;\mathbf 1^\top\hat L\mathbf 1}{(n-1)(n-2)}
            - \frac{2}{n-2}\,\mathbf 1^\top\hat K\hat L\mathbf 1\Big]

    Both are invariant to adding a constant to the features; the unbiased one is evaluated without forming
    ``n x n`` matrices (``diag K_ii = ||x_i||^2``, ``K 1 = X (X^T 1)``).
    """
    X, Y = _as_pair(X, Y, min_n=4 if unbiased else 2)
    X, Y = centre(X), centre(Y)
    n = X.shape[0]
    if not unbiased:
        return float(_cross_sq_frob(X, Y)) / (n - 1) ** 2
    dk, dl = X.pow(2).sum(1), Y.pow(2).sum(1)  # diagonals of K and L
    tr_kl = _cross_sq_frob(X, Y) - (dk * dl).sum()
    k1 = X @ X.sum(0) - dk  # \hat K 1
    l1 = Y @ Y.sum(0) - dl  # \hat L 1
    s = tr_kl + k1.sum() * l1.sum() / ((n - 1) * (n - 2)) - 2.0 / (n - 2) * (k1 @ l1)
    return float(s) / (n * (n - 3))


def linear_cka(X: Tensor, Y: Tensor) -> float:
    r"""Linear centred kernel alignment (Kornblith et al. 2019). ``X (n, p)``, ``Y (n, q)`` -> float in [0, 1].

    .. math::
        \text{CKA}(X, Y) = \frac{\operatorname{tr}(KHLH)}{\sqrt{\operatorname{tr}(KHKH)\operatorname{tr}(LHLH)}}
        = \frac{\|\tilde X^\top \tilde Y\|_F^2}{\|\tilde X^\top \tilde X\|_F\,\|\tilde Y^\top \tilde Y\|_F}

    with :math:`\tilde X, \tilde Y` column-centred. Invariant to orthogonal transforms and isotropic scaling of
    either argument (not to general invertible maps). Returns NaN if either input is constant.
    For independent isotropic Gaussians it is *not* ~0 but about :math:`\sqrt{pq/((n-1+p)(n-1+q))}`;
    use :func:`linear_cka_debiased` for small ``n`` or wide features.
    """
    X, Y = _as_pair(X, Y)
    X, Y = centre(X), centre(Y)
    den = math.sqrt(float(_cross_sq_frob(X, X)) * float(_cross_sq_frob(Y, Y)))
    return float(_cross_sq_frob(X, Y)) / den if den > 0 else math.nan


def linear_cka_debiased(X: Tensor, Y: Tensor) -> float:
    r"""Debiased linear CKA (Nguyen et al. 2021, after Song et al. 2012). ``X (n, p)``, ``Y (n, q)``, ``n > 3``.

    .. math::
        \text{CKA}_u(X, Y) = \frac{\text{HSIC}_u(K, L)}{\sqrt{\text{HSIC}_u(K, K)\,\text{HSIC}_u(L, L)}}

    with :math:`\text{HSIC}_u` the unbiased estimator of :func:`hsic_linear`. Its expectation is ~0 for
    independent representations even for small batches (unlike :func:`linear_cka`); individual values can
    be slightly negative. :math:`\text{HSIC}_u(K, K) \ge 0` always; returns NaN if either is 0.
    """
    X, Y = _as_pair(X, Y, min_n=4)
    hxy = hsic_linear(X, Y, unbiased=True)
    den = hsic_linear(X, X, unbiased=True) * hsic_linear(Y, Y, unbiased=True)
    return hxy / math.sqrt(den) if den > 0 else math.nan


def _n_components(s: Tensor, variance_kept: float) -> int:
    r"""Smallest k with :math:`\sum_{i\le k} s_i^2 / \sum_i s_i^2 \ge` ``variance_kept`` (1e-10 slack)."""
    frac = torch.cumsum(s.pow(2), 0) / s.pow(2).sum()
    return min(int((frac < variance_kept - 1e-10).sum()) + 1, s.numel())


def svcca(X: Tensor, Y: Tensor, variance_kept: float = 0.99) -> float:
    r"""Singular-vector CCA (Raghu et al. 2017) as in ``tracer_algorithm.md`` section 9.2. ``X (n, p)``, ``Y (n, q)``.

    1. Centre columns; thin SVDs :math:`\tilde X = U_X S_X V_X^\top`, :math:`\tilde Y = U_Y S_Y V_Y^\top`.
    2. :math:`k_X` = fewest components whose variance :math:`s_i^2` reaches ``variance_kept`` of the total
       (likewise :math:`k_Y`); keep :math:`k = \min(k_X, k_Y, \min(p, q))` top left-singular vectors (the
       :math:`\min(p, q)` term is already implied by the SVD ranks; it is kept to mirror the reference).
    3. Canonical correlations :math:`\rho_1..\rho_k` = singular values of :math:`U_{X,k}^\top U_{Y,k}`
       (cosines of the principal angles between the two reduced subspaces, equal to CCA of the reduced data).
    4. Score :math:`= \frac1k \sum_j \rho_j \in [0, 1]`.

    Invariant to orthogonal maps and isotropic scaling of either input. Invariance to a general invertible map
    holds only when nothing is truncated (``variance_kept=1.0`` and ``p == q`` at full rank), because the
    truncation itself depends on the spectrum. Returns NaN if either input is constant.
    """
    X, Y = _as_pair(X, Y)
    return svcca_from_svds(centred_svd(X), centred_svd(Y), variance_kept)


def centred_svd(X: Tensor) -> tuple[Tensor, Tensor, int]:
    """(U (n, r), s (r,), p) of the column-centred float64 ``X (n, p)``: the part of :func:`svcca` that
    depends on one input only, so a fixed matrix (the pretrained model's probe features) is decomposed once."""
    X = torch.as_tensor(X).detach()
    X = (X[:, None] if X.ndim == 1 else X).to(torch.float64)
    u, s, _ = torch.linalg.svd(centre(X), full_matrices=False)
    return u, s, X.shape[1]


def svcca_from_svds(a: tuple[Tensor, Tensor, int], b: tuple[Tensor, Tensor, int], variance_kept: float = 0.99) -> float:
    """Steps 2-4 of :func:`svcca` from two :func:`centred_svd` results (same rows n)."""
    if not 0.0 < variance_kept <= 1.0:
        raise ValueError(f"variance_kept must be in (0, 1], got {variance_kept}")
    (ux, sx, p), (uy, sy, q) = a, b
    if ux.shape[0] != uy.shape[0]:
        raise ValueError(f"X and Y must have the same number of rows, got {ux.shape[0]} and {uy.shape[0]}")
    if float(sx.sum()) == 0.0 or float(sy.sum()) == 0.0:
        return math.nan
    k = min(_n_components(sx, variance_kept), _n_components(sy, variance_kept), p, q)
    rho = torch.linalg.svdvals(ux[:, :k].T @ uy[:, :k].to(ux.device)).clamp(0.0, 1.0)
    return float(rho.mean())
