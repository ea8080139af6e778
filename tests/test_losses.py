"""Loss terms against references (open_clip ClipLoss, torch KL) and the teacher==student identities."""
import pytest
import torch
import torch.nn.functional as F
from open_clip.loss import ClipLoss

from tracer_core.losses import (basic_sd_loss, clip_contrastive_loss, crd_loss, cross_fnorm, cross_kd_loss,
                                fd_loss, icl_loss, kd_terms, l2sp, orthogonality, total_loss)


def _feats(b=16, d=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    f = F.normalize(torch.randn(b, d, generator=g), dim=-1)
    t = F.normalize(torch.randn(b, d, generator=g), dim=-1)
    return f, t


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_clip_contrastive_equals_open_clip(seed):
    f, t = _feats(seed=seed)
    scale = torch.tensor(14.3)
    ours = clip_contrastive_loss(f, t, scale)
    ref = ClipLoss()(f, t, scale)
    torch.testing.assert_close(ours, ref, rtol=1e-6, atol=1e-6)


def test_label_smoothing_changes_loss():
    f, t = _feats()
    assert clip_contrastive_loss(f, t, torch.tensor(10.0), 0.1) != clip_contrastive_loss(f, t, torch.tensor(10.0))


def test_kd_terms_vanish_when_teacher_is_student():
    f, g = _feats(seed=3)
    s = torch.tensor(20.0)
    z = s * f @ g.t()
    assert fd_loss(f, g, f, g).item() == 0.0
    assert abs(crd_loss(z, z).item()) < 1e-6
    assert abs(cross_kd_loss(f, g, s, f, g, s).item()) < 1e-6
    torch.testing.assert_close(icl_loss(f, g, s, f, g), clip_contrastive_loss(f, g, s))


def test_kd_terms_differ_for_a_different_teacher():
    f, g = _feats(seed=4)
    ft, gt = _feats(seed=5)
    s, st = torch.tensor(20.0), torch.tensor(15.0)
    assert fd_loss(f, g, ft, gt) > 1e-3
    assert crd_loss(st * ft @ gt.t(), s * f @ g.t()) > 1e-3
    assert cross_kd_loss(f, g, s, ft, gt, st) > 1e-3
    assert (icl_loss(f, g, s, ft, gt) - clip_contrastive_loss(f, g, s)).abs() > 1e-3


def test_crd_is_half_summed_kl_and_basic_sd_differs_by_teacher_entropy():
    f, g = _feats(seed=6)
    ft, gt = _feats(seed=7)
    zs, zt = 10 * f @ g.t(), 12 * ft @ gt.t()
    kl = lambda a, b: F.kl_div(F.log_softmax(b, -1), F.softmax(a, -1), reduction="batchmean")  # KL(a||b)
    torch.testing.assert_close(crd_loss(zt, zs), 0.5 * (kl(zt, zs) + kl(zt.t(), zs.t())))
    ent = lambda z: -(F.softmax(z, -1) * F.log_softmax(z, -1)).sum(-1).mean()
    torch.testing.assert_close(basic_sd_loss(zt, zs), kl(zt, zs) + kl(zt.t(), zs.t()) + ent(zt) + ent(zt.t()))


def test_fd_is_element_mean_mse():
    f, g = _feats(seed=8)
    ft, gt = _feats(seed=9)
    b, d = f.shape
    expected = ((f - ft) ** 2).sum() / (b * d) + ((g - gt) ** 2).sum() / (b * d)
    torch.testing.assert_close(fd_loss(f, g, ft, gt), expected)


def test_kd_terms_only_active_alphas():
    f, g = _feats()
    out = kd_terms((f, g, torch.tensor(5.0)), (f, g, torch.tensor(5.0)), {"crd": 1.0, "fd": 0.0, "icl": 1.0})
    assert set(out) == {"crd", "icl"}


def test_regularizers_closed_form():
    q, _ = torch.linalg.qr(torch.randn(12, 4, dtype=torch.float64))   # orthonormal columns
    assert orthogonality(q).item() == pytest.approx(0.0, abs=1e-10)
    assert orthogonality(2 * q).item() == pytest.approx(3.0 * 2.0, abs=1e-9)   # ||3 I_4||_F = 6
    wv, wt = torch.randn(12, 4), torch.randn(10, 4)
    assert cross_fnorm(wv, wt).item() == pytest.approx(torch.sqrt(((wv @ wt.t()) ** 2).sum()).item(), rel=1e-5)
    p = [torch.ones(3), torch.zeros(2, 2)]
    a = [torch.zeros(3), torch.ones(2, 2)]
    assert l2sp(p, a).item() == pytest.approx(7.0)


def test_total_loss_sums_only_loss_keys():
    terms = {"clip_loss": torch.tensor(1.0), "fd_loss": torch.tensor(2.0), "fd": torch.tensor(100.0)}
    assert total_loss(terms).item() == 3.0
