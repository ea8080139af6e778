"""Per-step statistics (spec §5.1) and series summaries (spec §5.2) against closed forms."""
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from tracer_core.metrics import teacher_student_stats
from tracer_core.metrics.summaries import auc_normalized, early_slope, half_life_step, summarize
from tracer_core.metrics.teacher_stats import entropy_rows, prediction_diversity, topk_overlap


def test_kl_of_identical_logits_is_zero_and_agreement_one():
    z = torch.randn(32, 32)
    s = teacher_student_stats(z, z)
    assert abs(s[("teacher_student_kl", "combined")]) < 1e-6
    assert s[("teacher_student_agreement", "combined")] == 1.0
    assert s[("teacher_student_top5_alignment", "img")] == 1.0
    assert s[("teacher_student_accuracy_diff", "combined")] == 0.0
    assert ("teacher_student_top5_alignment", "combined") not in s


def test_entropy_of_uniform_rows_is_log_b():
    b = 24
    s = teacher_student_stats(torch.zeros(b, b), torch.randn(b, b))
    assert s[("teacher_avg_entropy", "combined")] == pytest.approx(math.log(b), rel=1e-5)
    assert s[("teacher_effective_temperature", "img")] == pytest.approx(1.0, rel=1e-5)
    assert s[("teacher_avg_confidence", "img")] == pytest.approx(1.0 / b, rel=1e-5)
    assert s[("teacher_gt_prob", "text")] == pytest.approx(1.0 / b, rel=1e-5)


def test_kl_matches_torch_reference_both_directions():
    g = torch.Generator().manual_seed(0)
    zt, zs = torch.randn(16, 16, generator=g) * 3, torch.randn(16, 16, generator=g) * 3
    s = teacher_student_stats(zt, zs)
    for d, (a, b) in {"img": (zt, zs), "text": (zt.t(), zs.t())}.items():
        p, q = F.softmax(a, -1), F.softmax(b, -1)
        ref = (p * (p.log() - (q + 1e-8).log())).sum(-1).mean()
        assert s[("teacher_student_kl", d)] == pytest.approx(ref.item(), rel=1e-5)
    assert s[("teacher_student_kl", "combined")] == pytest.approx(
        0.5 * (s[("teacher_student_kl", "img")] + s[("teacher_student_kl", "text")]))


def test_accuracy_uses_the_diagonal():
    z = torch.full((4, 4), -10.0)
    z[torch.arange(4), torch.tensor([0, 1, 3, 2])] = 10.0       # rows 2 and 3 wrong
    s = teacher_student_stats(z, z)
    assert s[("teacher_accuracy", "img")] == 0.5


def test_diversity_and_topk_hand_cases():
    # The reference's Gini-type score is identically 1: sum_j 2 p_j C_j = (sum p)^2 + sum p^2, so the
    # bracket cancels for every distribution. We keep the spec's formula (and say so in the docstring).
    one_hot = torch.eye(5)[:1]
    g = torch.Generator().manual_seed(1)
    rand = F.softmax(torch.randn(8, 6, generator=g) * 3, -1)
    for p in (one_hot, torch.full((1, 4), 0.25), rand):
        assert prediction_diversity(p).item() == pytest.approx(1.0, abs=1e-6)
    a = torch.tensor([[5.0, 4, 3, 2, 1, 0, -1]])
    b = torch.tensor([[-1.0, 0, 1, 2, 3, 4, 5]])
    assert topk_overlap(a, b, 5).item() == pytest.approx(3 / 5)
    assert entropy_rows(one_hot).item() == pytest.approx(0.0, abs=1e-6)


def test_summaries_closed_form():
    steps = np.arange(1, 101, dtype=float)
    values = 2.0 ** (-steps / 10)                   # halves every 10 steps
    assert half_life_step(steps, values) == 11.0    # first step with v <= v[0]/2
    assert half_life_step(steps, np.ones(100)) is None
    assert half_life_step(steps, -np.ones(100)) is None
    assert auc_normalized(steps, 3 * np.ones(100)) == pytest.approx(3.0)
    assert auc_normalized(steps, steps) == pytest.approx((1 + 100) / 2, rel=1e-9)   # linear: mean of ends
    assert early_slope(steps, 0.5 * steps + 1) == pytest.approx(0.5)
    s = summarize(steps, values)
    assert s["last_value"] == pytest.approx(values[-1])
    assert set(s) == {"last_value", "auc_normalized", "early_slope", "half_life_step"}
