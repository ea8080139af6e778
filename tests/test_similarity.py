"""Tests for tracer_core.metrics.similarity: analytic identities and independent reference implementations.

References: explicit Gram/centring-matrix HSIC, Kornblith et al.'s NumPy debiased CKA (``center_gram(unbiased=True)``),
Monte-Carlo unbiasedness of HSIC_u, scipy principal angles and a classical whitening CCA for SVCCA.
"""
import math

import numpy as np
import pytest
import scipy.linalg
import torch

from tracer_core.metrics.similarity import (
    centre,
    hsic_linear,
    linear_cka,
    linear_cka_debiased,
    svcca,
)

SEEDS = [0, 1, 2]


def _gen(seed):
    return torch.Generator().manual_seed(seed)


def _orthogonal(d, g):
    q, r = torch.linalg.qr(torch.randn(d, d, generator=g, dtype=torch.float64))
    return q * torch.sign(torch.diagonal(r))


def _correlated(seed, n=300, p=20, q=15, noise=1.0):
    g = _gen(seed)
    X = torch.randn(n, p, generator=g, dtype=torch.float64) @ torch.randn(p, p, generator=g, dtype=torch.float64)
    Y = X @ torch.randn(p, q, generator=g, dtype=torch.float64) + noise * torch.randn(n, q, generator=g,
                                                                                      dtype=torch.float64)
    return X + 2.0, Y - 5.0  # non-zero means: centring must happen inside


# ------------------------------------------------------------------------------------------------ references
def _gram_cka(X, Y):
    """tr(KHLH) / sqrt(tr(KHKH) tr(LHLH)) with explicit K = X X^T, L = Y Y^T and H = I - 11^T/n."""
    X, Y = np.asarray(X, np.float64), np.asarray(Y, np.float64)
    n = X.shape[0]
    H = np.eye(n) - np.ones((n, n)) / n
    K, L = X @ X.T, Y @ Y.T
    return np.trace(K @ H @ L @ H) / math.sqrt(np.trace(K @ H @ K @ H) * np.trace(L @ H @ L @ H))


def _kornblith_center_gram_unbiased(gram):
    """Kornblith et al. (google-research/representation_similarity) center_gram(unbiased=True)."""
    gram = gram.copy()
    n = gram.shape[0]
    np.fill_diagonal(gram, 0)
    means = np.sum(gram, 0, dtype=np.float64) / (n - 2)
    means -= np.sum(means) / (2 * (n - 1))
    gram -= means[:, None]
    gram -= means[None, :]
    np.fill_diagonal(gram, 0)
    return gram


def _kornblith_debiased_cka(X, Y):
    gx = _kornblith_center_gram_unbiased(np.asarray(X) @ np.asarray(X).T)
    gy = _kornblith_center_gram_unbiased(np.asarray(Y) @ np.asarray(Y).T)
    return gx.ravel() @ gy.ravel() / (np.linalg.norm(gx) * np.linalg.norm(gy))


def _song_hsic_u(X, Y):
    """Song et al. (2012) unbiased HSIC with explicit n x n matrices."""
    X, Y = np.asarray(X, np.float64), np.asarray(Y, np.float64)
    n = X.shape[0]
    K, L = X @ X.T, Y @ Y.T
    np.fill_diagonal(K, 0)
    np.fill_diagonal(L, 0)
    one = np.ones(n)
    return (np.trace(K @ L) + (one @ K @ one) * (one @ L @ one) / ((n - 1) * (n - 2))
            - 2 / (n - 2) * (one @ K @ L @ one)) / (n * (n - 3))


def _n99(s, kept):
    frac = np.cumsum(s ** 2) / np.sum(s ** 2)
    return int(np.searchsorted(frac, kept - 1e-10) + 1)


def _svcca_reference(X, Y, kept=0.99):
    """SVD-reduce each side, then classical CCA (whitening) on the reduced data; also scipy principal angles."""
    X = np.asarray(X, np.float64) - np.asarray(X).mean(0)
    Y = np.asarray(Y, np.float64) - np.asarray(Y).mean(0)
    ux, sx, vxt = np.linalg.svd(X, full_matrices=False)
    uy, sy, vyt = np.linalg.svd(Y, full_matrices=False)
    k = min(_n99(sx, kept), _n99(sy, kept), X.shape[1], Y.shape[1])
    xr, yr = X @ vxt[:k].T, Y @ vyt[:k].T  # reduced data (n, k)

    def inv_sqrt(c):
        w, v = np.linalg.eigh(c)
        return v @ np.diag(w ** -0.5) @ v.T

    m = inv_sqrt(xr.T @ xr) @ (xr.T @ yr) @ inv_sqrt(yr.T @ yr)
    rho_cca = np.linalg.svd(m, compute_uv=False)
    rho_angles = np.cos(scipy.linalg.subspace_angles(ux[:, :k], uy[:, :k]))
    return float(np.mean(rho_cca)), float(np.mean(rho_angles))


# ------------------------------------------------------------------------------------------------ linear CKA
@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("n,p", [(200, 16), (40, 300)])  # feature-space path and n x n Gram path
def test_cka_invariant_to_orthogonal_transform(seed, n, p):
    g = _gen(seed)
    X = torch.randn(n, p, generator=g, dtype=torch.float64) + 1.0
    Q = _orthogonal(p, g)
    assert linear_cka(X, X @ Q) == pytest.approx(1.0, abs=1e-6)
    Y = X @ Q + 0.5 * torch.randn(n, p, generator=g, dtype=torch.float64)
    assert linear_cka(X, Y) == pytest.approx(linear_cka(X @ _orthogonal(p, g), Y), abs=1e-9)


@pytest.mark.parametrize("seed", SEEDS)
def test_cka_invariant_to_isotropic_scaling_not_to_anisotropic(seed):
    X, Y = _correlated(seed)
    ref = linear_cka(X, Y)
    assert linear_cka(3.7 * X, 0.01 * Y) == pytest.approx(ref, abs=1e-9)
    D = torch.linspace(0.1, 10.0, X.shape[1], dtype=torch.float64)
    assert abs(linear_cka(X * D, Y) - ref) > 1e-3


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("n,p,q", [(120, 10, 7), (30, 80, 50)])
def test_cka_equals_explicit_gram_hsic_formula(seed, n, p, q):
    X, Y = _correlated(seed, n=n, p=p, q=q, noise=3.0)
    assert linear_cka(X, Y) == pytest.approx(_gram_cka(X.numpy(), Y.numpy()), abs=1e-9)
    H = np.eye(n) - np.ones((n, n)) / n
    K, L = X.numpy() @ X.numpy().T, Y.numpy() @ Y.numpy().T
    assert hsic_linear(X, Y) == pytest.approx(np.trace(K @ H @ L @ H) / (n - 1) ** 2, rel=1e-9)
    # float32 input is promoted to float64 internally
    assert linear_cka(X.float(), Y.float()) == pytest.approx(_gram_cka(X.numpy(), Y.numpy()), abs=1e-5)


@pytest.mark.parametrize("seed", range(5))
def test_cka_of_independent_data_is_small_known_value(seed):
    n, p = 200, 50
    g = _gen(seed)
    X, Y = (torch.randn(n, p, generator=g, dtype=torch.float64) for _ in range(2))
    v = linear_cka(X, Y)
    # E[CKA] ~ sqrt(pq / ((n-1+p)(n-1+q))) = p/(n-1+p) = 0.2008 for isotropic Gaussians; sd ~ 0.006
    assert v < 0.5
    assert v == pytest.approx(p / (n - 1 + p), abs=0.03)


def test_cka_degenerate_inputs():
    X = torch.randn(10, 3)
    assert math.isnan(linear_cka(X, torch.ones(10, 2)))
    with pytest.raises(ValueError):
        linear_cka(X, torch.randn(9, 3))
    assert linear_cka(X[:, 0], X[:, 0] * -2 + 1) == pytest.approx(1.0)  # 1-D inputs are (n, 1)


# ------------------------------------------------------------------------------------------------ debiased CKA
@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("n,p,q", [(12, 5, 4), (60, 200, 30)])
def test_unbiased_hsic_and_debiased_cka_match_references(seed, n, p, q):
    X, Y = _correlated(seed, n=n, p=p, q=q, noise=2.0)
    assert hsic_linear(X, Y, unbiased=True) == pytest.approx(_song_hsic_u(X.numpy(), Y.numpy()), rel=1e-8)
    ref = _kornblith_debiased_cka(X.numpy(), Y.numpy())
    assert linear_cka_debiased(X, Y) == pytest.approx(ref, abs=1e-9)
    assert linear_cka_debiased(X, X) == pytest.approx(1.0, abs=1e-9)


def test_unbiased_hsic_is_unbiased_and_biased_is_not():
    # population HSIC (linear kernel) = ||Cov(X, Y)||_F^2 = ||A||_F^2 for X ~ N(0, I), Y = X A + noise
    g = _gen(11)
    p, q, n, reps = 4, 3, 10, 3000
    A = torch.randn(p, q, generator=g, dtype=torch.float64)
    target = float((A ** 2).sum())
    vu, vb = [], []
    for _ in range(reps):
        X = torch.randn(n, p, generator=g, dtype=torch.float64)
        Y = X @ A + torch.randn(n, q, generator=g, dtype=torch.float64)
        vu.append(hsic_linear(X, Y, unbiased=True))
        vb.append(hsic_linear(X, Y))
    mu, se = np.mean(vu), np.std(vu) / math.sqrt(reps)
    assert abs(mu - target) < 4 * se
    assert np.mean(vb) - target > 10 * np.std(vb) / math.sqrt(reps)  # the biased estimator overshoots at n=10


@pytest.mark.parametrize("seed", range(5))
def test_debiased_cka_independent_is_near_zero(seed):
    n, p = 200, 50
    g = _gen(seed)
    X, Y = (torch.randn(n, p, generator=g, dtype=torch.float64) for _ in range(2))
    assert abs(linear_cka_debiased(X, Y)) < 0.1
    assert linear_cka(X, Y) > 0.15  # the biased CKA on the same data is far from 0
    assert linear_cka_debiased(X, X) == pytest.approx(1.0, abs=1e-9)


def test_debiased_cka_needs_four_samples():
    with pytest.raises(ValueError):
        linear_cka_debiased(torch.randn(3, 2), torch.randn(3, 2))


# ------------------------------------------------------------------------------------------------ SVCCA
@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("n,p,q", [(300, 20, 15), (60, 100, 40)])
def test_svcca_matches_cca_and_principal_angle_references(seed, n, p, q):
    X, Y = _correlated(seed, n=n, p=p, q=q, noise=2.0)
    ref_cca, ref_angles = _svcca_reference(X.numpy(), Y.numpy())
    ours = svcca(X, Y)
    assert ours == pytest.approx(ref_cca, abs=1e-6)
    assert ours == pytest.approx(ref_angles, abs=1e-6)
    assert 0.0 < ours < 1.0


@pytest.mark.parametrize("seed", SEEDS)
def test_svcca_self_is_one_and_orthogonal_scale_invariant(seed):
    X, Y = _correlated(seed)
    assert svcca(X, X) == pytest.approx(1.0, abs=1e-9)
    Q = _orthogonal(X.shape[1], _gen(seed + 100))
    assert svcca(X, Y) == pytest.approx(svcca(4.0 * X @ Q + 3.0, Y), abs=1e-9)


@pytest.mark.parametrize("seed", SEEDS)
def test_svcca_invariant_to_full_rank_invertible_maps_without_truncation(seed):
    X, Y = _correlated(seed, n=300, p=12, q=12, noise=3.0)
    g = _gen(seed + 7)
    A = torch.randn(12, 12, generator=g, dtype=torch.float64) + 3 * torch.eye(12, dtype=torch.float64)
    B = torch.randn(12, 12, generator=g, dtype=torch.float64)
    assert abs(torch.linalg.det(A)) > 1e-3 and abs(torch.linalg.det(B)) > 1e-3
    ref = svcca(X, Y, variance_kept=1.0)
    assert svcca(X @ A, Y @ B, variance_kept=1.0) == pytest.approx(ref, abs=1e-7)
    assert svcca(X @ A, X, variance_kept=1.0) == pytest.approx(1.0, abs=1e-7)
    assert ref < 0.999


def test_svcca_of_independent_data_is_well_below_one():
    g = _gen(5)
    X, Y = (torch.randn(500, 20, generator=g, dtype=torch.float64) for _ in range(2))
    assert svcca(X, Y) < 0.3


def test_svcca_truncation_counts_components():
    # rank-3 X in 10 dims with variances (100, 9, 1e-4): 99% needs 2 components, 90% needs 1
    g = _gen(0)
    U = torch.linalg.qr(centre(torch.randn(200, 3, generator=g, dtype=torch.float64)))[0]
    V = _orthogonal(10, g)[:3]
    X = U @ torch.diag(torch.tensor([10.0, 3.0, 0.01], dtype=torch.float64)) @ V
    Y = U[:, [1]] @ V[:1]  # only X's 2nd direction: k = min(2, 1, 10) = 1 and U_X1 is orthogonal to U_Y1
    assert svcca(X, Y) == pytest.approx(0.0, abs=1e-7)
    Y2 = U[:, [0, 1]] @ torch.diag(torch.tensor([1.0, 2.0], dtype=torch.float64)) @ V[:2]  # Y2's top = X's 2nd
    assert svcca(X, Y2) == pytest.approx(1.0, abs=1e-7)  # k = 2, same span
    assert svcca(X, Y2, variance_kept=0.7) == pytest.approx(0.0, abs=1e-7)  # k = 1, orthogonal tops
    with pytest.raises(ValueError):
        svcca(X, Y, variance_kept=0.0)
    assert math.isnan(svcca(torch.ones(20, 3), X[:20]))
