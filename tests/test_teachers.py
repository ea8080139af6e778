"""Teachers against closed forms (spec §2, §3.1) and the registry contract."""
import copy
import math

import numpy as np
import pytest
import torch
import torch.nn as nn
from scipy.stats import beta as beta_dist

from tracer_core.teachers import (beta_kernel, create_teacher, list_teachers, momentum_schedule,
                                  snapshot_weights, teacher_profile, update_weights)


def _net(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.Linear(8, 3))


def _perturb(model, seed):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=g))


@pytest.mark.parametrize("b", [0.2, 0.5, 1.0, 1.5])
def test_beta_kernel_matches_scipy(b):
    total = 1000
    for n in (0, 1, 17, 500, 999, 1000):
        x = (n + 0.5) / (total + 1)
        assert beta_kernel(n, total, b) == pytest.approx(beta_dist(b, b).pdf(x), rel=1e-10)


def test_wma_equals_closed_form_weighted_average():
    total, b = 12, 0.5
    student = _net()
    teacher = create_teacher("wma", student, total_steps=total, beta=b)
    snaps = [copy.deepcopy(student.state_dict())]
    for step in range(7):
        _perturb(student, step)
        teacher.update(student, step)
        snaps.append(copy.deepcopy(student.state_dict()))
    kappa = np.array([beta_kernel(j, total, b) for j in range(len(snaps))])
    for name, tparam in teacher.module.named_parameters():
        expected = sum(k * s[name].double() for k, s in zip(kappa, snaps)) / kappa.sum()
        torch.testing.assert_close(tparam.double(), expected, rtol=1e-6, atol=1e-7)
    assert teacher.num_updates == 7


def test_wma_gating_every_f_includes_zero_and_last():
    mix = update_weights("wma", 20, beta=0.5, update_every=6)
    assert list(np.nonzero(mix)[0]) == [0, 6, 12, 18, 19]


def test_ema_momentum_schedule_spec_values():
    total = 25030          # the reference run: warm-up 0.2 * 25,030 = 5,006 steps
    assert momentum_schedule(0, total) == pytest.approx(0.05)
    assert momentum_schedule(2503, total) == pytest.approx(0.05 + 0.85 * 2503 / 5006)
    assert momentum_schedule(5005, total) == pytest.approx(0.05 + 0.85 * 5005 / 5006)
    assert momentum_schedule(5006, total) == pytest.approx(0.9)
    assert momentum_schedule(25029, total) == pytest.approx(0.9)


def test_ema_update_rule_and_gating():
    student = _net()
    theta0 = copy.deepcopy(student.state_dict())
    teacher = create_teacher("ema", student, total_steps=100, update_every=1)
    _perturb(student, 1)
    teacher.update(student, 0)            # m(0) = 0.05: teacher = 0.05 theta0 + 0.95 theta1
    for name, tparam in teacher.module.named_parameters():
        torch.testing.assert_close(tparam, 0.05 * theta0[name] + 0.95 * student.state_dict()[name])
    t500 = create_teacher("ema", student, total_steps=2000, update_every=0)   # <= 0 means 500 (P4)
    assert [s for s in range(2000) if t500.mixing_weight(s) is not None] == [0, 500, 1000, 1500]


def test_frozen_teacher_never_moves_and_buffers_policy():
    student = _net()
    frozen = create_teacher("frozen", student)
    wma = create_teacher("wma", student, total_steps=10, beta=0.5)
    wma_buf = create_teacher("wma", student, total_steps=10, beta=0.5, average_buffers=True)
    before = copy.deepcopy(frozen.module.state_dict())
    student.train()
    student(torch.randn(16, 4))           # changes BN running stats of the student
    _perturb(student, 3)
    for t in (frozen, wma, wma_buf):
        t.update(student, 0)
    for k, v in frozen.module.state_dict().items():
        torch.testing.assert_close(v, before[k])
    rm = "1.running_mean"
    torch.testing.assert_close(wma.module.state_dict()[rm], before[rm])          # buffers kept (P3)
    assert not torch.allclose(wma_buf.module.state_dict()[rm], before[rm])        # averaged on request


@pytest.mark.parametrize("kind", list_teachers())
def test_teacher_contract(kind):
    student = _net()
    teacher = create_teacher(kind, student, total_steps=10)
    assert teacher.module is not student
    assert all(not p.requires_grad for p in teacher.module.parameters())
    assert not teacher.module.training
    assert all(p.data_ptr() != q.data_ptr() for p, q in zip(teacher.module.parameters(), student.parameters()))
    _perturb(student, 5)
    for s in range(3):
        teacher.update(student, s)
    state = teacher.state_dict()
    clone = create_teacher(kind, _net(9), total_steps=10)
    clone.load_state_dict(state)
    assert clone.num_updates == teacher.num_updates
    for a, b in zip(clone.module.parameters(), teacher.module.parameters()):
        torch.testing.assert_close(a, b)
    if kind == "wma":
        assert clone.running_sum == teacher.running_sum
        assert teacher.running_sum > beta_kernel(0, 10, 0.5)


def test_snapshot_weights_replay_matches_profile_and_sums_to_one():
    for kind, opts in (("wma", {"beta": 0.5}), ("ema", {"update_every": 1}), ("wma", {"beta": 0.3, "update_every": 5})):
        mix = update_weights(kind, 200, **opts)
        prof = teacher_profile(mix)
        for at in (0, 10, 199):
            w = snapshot_weights(mix, at)
            assert w.sum() == pytest.approx(1.0)
            assert w[0] == pytest.approx(prof["pretrained_share"][at])
            assert (at + 1) - (np.arange(len(w)) * w).sum() == pytest.approx(prof["lag"][at])


def test_wma_keeps_far_more_pretrained_and_lag_than_ema():
    total = 25030
    wma = teacher_profile(update_weights("wma", total, beta=0.5))
    ema = teacher_profile(update_weights("ema", total, update_every=1))
    # spec §2 table: beta=0.5 theta_0 share 0.29 % and mean lag 12,515 at the end of training
    assert wma["pretrained_share"][-1] == pytest.approx(0.0029, abs=0.0003)
    assert wma["lag"][-1] == pytest.approx(12515, abs=5)
    assert ema["lag"][-1] < 10 and ema["pretrained_share"][-1] < 1e-12
    assert math.isfinite(wma["lag"][total // 2])
