"""Tests for tracer_core.metrics.calibration against independent references.

References: a plain NumPy per-sample loop, torchmetrics 1.9 (MulticlassCalibrationError, the metric the TRACER
reference code uses), ``F.cross_entropy`` and hand-computed values.
"""
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torchmetrics.classification import MulticlassCalibrationError
from torchmetrics.functional.classification import multiclass_calibration_error

from tracer_core.metrics.calibration import (
    CalibrationAccumulator,
    batch_averaged_ece,
    brier_score,
    expected_calibration_error,
    maximum_calibration_error,
    negative_log_likelihood,
    reliability_bins,
)

SEEDS = [0, 1, 2, 3, 4]


# ------------------------------------------------------------------------------------------------ references
def _numpy_ece_mce(probs, labels, n_bins=10):
    """Straightforward loop: k/n_bins float32 edges, bin b holds e_b <= conf < e_{b+1}, conf == 1 -> extra bucket."""
    probs = np.asarray(probs, dtype=np.float32)
    labels = np.asarray(labels)
    edges = [np.float32(k / n_bins) for k in range(n_bins + 1)]
    count, conf_sum, acc_sum = [0] * (n_bins + 1), [0.0] * (n_bins + 1), [0.0] * (n_bins + 1)
    for row, y in zip(probs, labels):
        conf, pred = row.max(), int(row.argmax())
        b = max(j for j in range(n_bins + 1) if edges[j] <= conf)
        count[b] += 1
        conf_sum[b] += float(conf)
        acc_sum[b] += float(pred == y)
    n = len(labels)
    ece = sum(abs(acc_sum[b] / count[b] - conf_sum[b] / count[b]) * count[b] / n
              for b in range(n_bins + 1) if count[b])
    mce = max(abs(acc_sum[b] / count[b] - conf_sum[b] / count[b]) for b in range(n_bins + 1) if count[b])
    return ece, mce


def _tm(probs_or_logits, labels, norm="l1", n_bins=10):
    m = MulticlassCalibrationError(num_classes=probs_or_logits.shape[1], n_bins=n_bins, norm=norm)
    return float(m(probs_or_logits, labels))


def _random_logits(seed, n=1500, c=7, scale=3.0):
    g = torch.Generator().manual_seed(seed)
    logits = scale * torch.randn(n, c, generator=g)
    labels = torch.randint(0, c, (n,), generator=g)
    # make accuracy non-trivial: half the labels agree with the argmax
    agree = torch.rand(n, generator=g) < 0.5
    labels = torch.where(agree, logits.argmax(1), labels)
    return logits, labels


def _edge_probs(seed, n_bins=10, c=4, n_per_edge=40):
    """Rows whose max probability is *exactly* a float32 bin edge k/n_bins (>= 1/c), plus one-hot rows (conf 1)."""
    g = torch.Generator().manual_seed(seed)
    edges = [np.float32(k / n_bins) for k in range(n_bins + 1) if k / n_bins > 1.0 / c]
    rows = []
    for e in edges:
        e = float(e)
        rest = (1.0 - e) / (c - 1)
        rows += [[e] + [rest] * (c - 1)] * n_per_edge
    p = torch.tensor(rows, dtype=torch.float32)
    # shuffle columns per row so the argmax is not always class 0
    perm = torch.argsort(torch.rand(p.shape, generator=g), dim=1)
    p = torch.gather(p, 1, perm)
    labels = torch.randint(0, c, (p.shape[0],), generator=g)
    agree = torch.rand(p.shape[0], generator=g) < 0.6
    labels = torch.where(agree, p.argmax(1), labels)
    return p, labels


# ------------------------------------------------------------------------------------------------ ECE / MCE
@pytest.mark.parametrize("seed", SEEDS)
def test_ece_matches_numpy_loop_and_torchmetrics_on_random_logits(seed):
    logits, labels = _random_logits(seed)
    probs = torch.softmax(logits, dim=1)
    ours = expected_calibration_error(probs, labels)
    ref_np, _ = _numpy_ece_mce(probs.numpy(), labels.numpy())
    assert ours == pytest.approx(ref_np, abs=1e-6)
    assert ours == pytest.approx(_tm(probs, labels), abs=1e-6)
    assert expected_calibration_error(logits=logits, labels=labels) == pytest.approx(_tm(logits, labels), abs=1e-6)
    assert ours > 0.01  # the data is genuinely miscalibrated, so the comparison is not 0 == 0


@pytest.mark.parametrize("seed", SEEDS)
def test_ece_and_mce_with_confidences_exactly_on_bin_edges(seed):
    probs, labels = _edge_probs(seed)
    conf = probs.max(1).values
    assert (conf == 1.0).any() and (conf == np.float32(0.5)).any()
    ece, mce = _numpy_ece_mce(probs.numpy(), labels.numpy())
    assert expected_calibration_error(probs, labels) == pytest.approx(ece, abs=1e-6)
    assert expected_calibration_error(probs, labels) == pytest.approx(_tm(probs, labels), abs=1e-6)
    assert maximum_calibration_error(probs, labels) == pytest.approx(mce, abs=1e-6)
    assert maximum_calibration_error(probs, labels) == pytest.approx(_tm(probs, labels, "max"), abs=1e-6)


def test_bin_edge_convention_when_torch_linspace_differs_from_k_over_n():
    # with 15 bins torch.linspace(0, 1, 16) float32 is not k/15 for some k: torchmetrics' edges rule
    probs, labels = _edge_probs(7, n_bins=15, c=3)
    assert expected_calibration_error(probs, labels, n_bins=15) == pytest.approx(
        _tm(probs, labels, n_bins=15), abs=1e-6)
    assert maximum_calibration_error(probs, labels, n_bins=15) == pytest.approx(
        _tm(probs, labels, "max", n_bins=15), abs=1e-6)


def test_float64_confidences_bin_like_torchmetrics_float32_cast():
    # torchmetrics casts confidences to float32 before bucketizing: 0.6 - 1e-12 (float64) rounds onto the float32
    # edge 0.6 (= 0.60000002) and goes to bin 6, although as a float64 it is below that edge
    conf = torch.tensor([0.6 - 1e-12, 0.8 - 1e-12, 0.6 + 0.05, 0.8 - 1e-12], dtype=torch.float64)
    probs = torch.stack([conf, 1 - conf], 1)
    labels = torch.tensor([1, 0, 0, 0])
    assert expected_calibration_error(probs, labels) == pytest.approx(_tm(probs, labels), abs=1e-6)
    b = reliability_bins(conf, probs.argmax(1) == labels)
    assert b["count"].tolist() == [0, 0, 0, 0, 0, 0, 2, 0, 2, 0, 0]


@pytest.mark.parametrize("seed", SEEDS)
def test_mce_matches_numpy_loop_and_torchmetrics(seed):
    logits, labels = _random_logits(seed, n=800, c=5)
    probs = torch.softmax(logits, 1)
    _, mce = _numpy_ece_mce(probs.numpy(), labels.numpy())
    assert maximum_calibration_error(probs, labels) == pytest.approx(mce, abs=1e-6)
    assert maximum_calibration_error(logits=logits, labels=labels) == pytest.approx(
        _tm(logits, labels, "max"), abs=1e-6)


def test_ece_is_zero_for_perfectly_calibrated_construction():
    c = 4
    rows, labels = [], []
    # (confidence, n samples, n correct): accuracy in each bin equals the confidence
    for conf, n, k in [(0.75, 100, 75), (0.5, 40, 20), (0.375, 64, 24), (1.0, 30, 30)]:
        rest = (1 - conf) / (c - 1)
        for i in range(n):
            rows.append([conf] + [rest] * (c - 1))
            labels.append(0 if i < k else 1 + i % (c - 1))
    probs, labels = torch.tensor(rows, dtype=torch.float64), torch.tensor(labels)
    assert expected_calibration_error(probs, labels) == pytest.approx(0.0, abs=1e-12)
    assert maximum_calibration_error(probs, labels) == pytest.approx(0.0, abs=1e-12)
    # flipping one correct sample to wrong makes it strictly positive: 1/234 of |-1| in the 0.75 bin
    labels[0] = 1
    assert expected_calibration_error(probs, labels) == pytest.approx(1 / 234, abs=1e-12)


def test_ece_hand_case_and_input_validation():
    probs = torch.tensor([[0.8, 0.2], [0.6, 0.4]])
    assert expected_calibration_error(probs, torch.tensor([0, 1])) == pytest.approx(0.4, abs=1e-7)
    with pytest.raises(ValueError):
        expected_calibration_error(probs, torch.tensor([0, 1]), logits=probs)
    with pytest.raises(ValueError):
        expected_calibration_error(probs, torch.tensor([0, 1, 1]))
    with pytest.raises(ValueError):
        expected_calibration_error(probs[0], torch.tensor([0]))
    with pytest.raises(ValueError):
        expected_calibration_error(probs, torch.tensor([0, 1]), n_bins=0)


# ------------------------------------------------------------------------------------------------ bins
def test_reliability_bins_edge_placement_and_stats():
    e = torch.linspace(0, 1, 11, dtype=torch.float32)
    conf = torch.cat([e, torch.tensor([0.05, 0.999])])  # every edge, incl. 0 and 1, plus two interior values
    correct = torch.tensor([1, 0, 1, 1, 0, 0, 1, 1, 1, 0, 1, 1, 0])
    b = reliability_bins(conf, correct, n_bins=10)
    # edge k/10 goes to bin k (left-closed); 1.0 gets its own bucket 10
    assert b["count"].tolist() == [2, 1, 1, 1, 1, 1, 1, 1, 1, 2, 1]
    assert b["lo"][3].item() == pytest.approx(0.3) and b["hi"][3].item() == pytest.approx(0.4)
    assert b["lo"][10].item() == 1.0 and b["hi"][10].item() == 1.0
    assert b["mean_confidence"][0].item() == pytest.approx(0.025)
    assert b["accuracy"][0].item() == pytest.approx(1.0) and b["accuracy"][9].item() == pytest.approx(0.0)
    assert b["mean_confidence"][9].item() == pytest.approx((0.9 + 0.999) / 2, abs=1e-6)


def test_reliability_bins_match_torchmetrics_binning():
    from torchmetrics.functional.classification.calibration_error import _binning_bucketize

    probs, labels = _edge_probs(3)
    conf, pred = probs.max(1)
    correct = pred.eq(labels)
    b = reliability_bins(conf, correct)
    acc_tm, conf_tm, prop_tm = _binning_bucketize(conf, correct.float(), torch.linspace(0, 1, 11))
    assert torch.allclose(b["count"] / b["count"].sum(), prop_tm.double(), atol=1e-7)
    assert torch.allclose(torch.nan_to_num(b["accuracy"]), acc_tm.double(), atol=1e-6)
    assert torch.allclose(torch.nan_to_num(b["mean_confidence"]), conf_tm.double(), atol=1e-6)
    assert torch.isnan(b["accuracy"][b["count"] == 0]).all()


def test_reliability_bins_rejects_out_of_range():
    with pytest.raises(ValueError):
        reliability_bins(torch.tensor([0.5, 1.2]), torch.tensor([1, 0]))


# ------------------------------------------------------------------------------------------------ NLL / Brier
@pytest.mark.parametrize("seed", SEEDS[:3])
def test_nll_equals_cross_entropy(seed):
    logits, labels = _random_logits(seed, n=300, c=6)
    ref = F.cross_entropy(logits.double(), labels).item()
    assert negative_log_likelihood(logits=logits, labels=labels) == pytest.approx(ref, abs=1e-9)
    probs = torch.softmax(logits.double(), 1)
    assert negative_log_likelihood(probs, labels) == pytest.approx(ref, abs=1e-9)


def test_brier_hand_case():
    probs = torch.tensor([[0.7, 0.2, 0.1], [0.1, 0.8, 0.1]])
    # sample 1: .09 + .04 + .01 = .14 ; sample 2 (label 2): .01 + .64 + .81 = 1.46 ; mean .8
    assert brier_score(probs, torch.tensor([0, 2])) == pytest.approx(0.8, abs=1e-7)
    assert brier_score(torch.eye(3), torch.tensor([0, 1, 2])) == 0.0
    assert brier_score(torch.eye(3), torch.tensor([1, 2, 0])) == pytest.approx(2.0)
    logits = torch.tensor([[2.0, 0.0], [0.0, 0.0]])
    p0 = 1 / (1 + math.exp(-2.0))
    ref = ((1 - p0) ** 2 * 2 + 0.5) / 2  # sample 2: (0.5-1)^2 + 0.5^2
    assert brier_score(logits=logits, labels=torch.tensor([0, 0])) == pytest.approx(ref, abs=1e-7)


# ------------------------------------------------------------------------------------------------ per-batch ECE
def _manual_batch_ece(logits, labels, bs):
    """The reference code's loop: tot_ece += ece_b * n_b; tot_ece / n, with torchmetrics per batch."""
    tot, n = 0.0, 0
    for s in range(0, len(labels), bs):
        lb, yb = logits[s:s + bs], labels[s:s + bs]
        tot += float(multiclass_calibration_error(lb, yb, num_classes=logits.shape[1], n_bins=10)) * len(yb)
        n += len(yb)
    return tot / n


@pytest.mark.parametrize("seed", SEEDS[:3])
def test_batch_averaged_ece_equals_manual_loop_on_class_sorted_data(seed):
    logits, labels = _random_logits(seed, n=1300, c=5)
    order = torch.argsort(labels, stable=True)  # class-sorted loader, like the reference eval
    logits, labels = logits[order], labels[order]
    ref = _manual_batch_ece(logits, labels, 256)
    ours = batch_averaged_ece(logits=logits, labels=labels, batch_size=256)
    assert ours == pytest.approx(ref, abs=1e-6)
    assert batch_averaged_ece(torch.softmax(logits, 1), labels, batch_size=256) == pytest.approx(ref, abs=1e-6)
    # it is a different number from the global ECE on class-sorted data (why P9 matters)
    assert abs(ours - expected_calibration_error(logits=logits, labels=labels)) > 1e-3
    # one batch covering everything == global ECE
    assert batch_averaged_ece(logits=logits, labels=labels, batch_size=10_000) == pytest.approx(
        expected_calibration_error(logits=logits, labels=labels), abs=1e-12)


# ------------------------------------------------------------------------------------------------ accumulator
@pytest.mark.parametrize("seed", SEEDS[:3])
def test_accumulator_over_batches_equals_whole_set(seed):
    logits, labels = _random_logits(seed, n=1000, c=6)
    acc = CalibrationAccumulator(n_bins=10)
    sizes = [256, 256, 100, 1, 387]
    for lb, yb in zip(torch.split(logits, sizes), torch.split(labels, sizes)):
        acc.update(lb, yb)
    out = acc.compute()
    probs = torch.softmax(logits, 1)
    assert out["ece"] == pytest.approx(expected_calibration_error(logits=logits, labels=labels), abs=1e-12)
    assert out["ece"] == pytest.approx(_tm(logits, labels), abs=1e-6)
    assert out["mce"] == pytest.approx(maximum_calibration_error(logits=logits, labels=labels), abs=1e-12)
    assert out["nll"] == pytest.approx(F.cross_entropy(logits.double(), labels).item(), abs=1e-9)
    assert out["brier"] == pytest.approx(brier_score(probs, labels), abs=1e-9)
    assert out["accuracy"] == pytest.approx((logits.argmax(1) == labels).double().mean().item(), abs=1e-12)
    assert out["n"] == 1000
    whole = reliability_bins(probs.max(1).values, probs.argmax(1) == labels)
    assert torch.equal(out["bins"]["count"], whole["count"])
    assert torch.allclose(out["bins"]["accuracy"], whole["accuracy"], equal_nan=True)
    # per-update ECE == the functional per-batch protocol for equal batch sizes
    acc2 = CalibrationAccumulator()
    for lb, yb in zip(torch.split(logits, 128), torch.split(labels, 128)):
        acc2.update(lb, yb)
    assert acc2.compute()["batch_averaged_ece"] == pytest.approx(
        batch_averaged_ece(logits=logits, labels=labels, batch_size=128), abs=1e-12)


@pytest.mark.parametrize("seed", SEEDS[:3])
def test_accumulator_sorted_protocol_ignores_update_order_and_sizes(seed):
    """What the evaluation uses: rows arrive shuffled in uneven updates, the per-batch ECE is still the
    reference's (class-sorted loader, batches of 512 -> here 256 on 1,300 rows), checked with torchmetrics."""
    logits, labels = _random_logits(seed, n=1300, c=5)
    order = torch.argsort(labels, stable=True)
    ref = _manual_batch_ece(logits[order], labels[order], 256)
    acc = CalibrationAccumulator(input_type="logits", sorted_batch_size=256)
    for lb, yb in zip(torch.split(logits, [100, 3, 700, 497]), torch.split(labels, [100, 3, 700, 497])):
        acc.update(lb, yb)
    out = acc.compute()
    assert out["batch_averaged_ece"] == pytest.approx(ref, abs=1e-6)
    assert out["batch_averaged_ece"] == pytest.approx(
        batch_averaged_ece(logits=logits[order], labels=labels[order], batch_size=256), abs=1e-12)
    assert out["ece"] == pytest.approx(expected_calibration_error(logits=logits, labels=labels), abs=1e-12)
    with pytest.raises(ValueError, match="sorted_batch_size"):
        CalibrationAccumulator(sorted_batch_size=0)


def test_merged_shards_equal_one_accumulator():
    """Data-parallel evaluation: contiguous shards merged in order give the whole set's numbers exactly."""
    logits, labels = _random_logits(3, n=1000, c=6)
    whole = CalibrationAccumulator(input_type="logits", sorted_batch_size=256)
    whole.update(logits, labels)
    shards = [CalibrationAccumulator(input_type="logits", sorted_batch_size=256) for _ in range(3)]
    for acc, (lo, hi) in zip(shards, [(0, 333), (333, 666), (666, 1000)]):
        acc.update(logits[lo:hi], labels[lo:hi])
    merged = shards[0].merge(shards[1]).merge(shards[2]).compute()
    ref = whole.compute()
    for key in ("ece", "mce", "batch_averaged_ece", "nll", "brier", "accuracy", "n"):
        assert merged[key] == pytest.approx(ref[key], abs=1e-12), key
    assert torch.equal(merged["bins"]["count"], ref["bins"]["count"])
    with pytest.raises(ValueError, match="same n_bins"):
        whole.merge(CalibrationAccumulator(n_bins=5))


def test_accumulator_probs_input_reset_and_errors():
    probs, labels = _edge_probs(1)
    acc = CalibrationAccumulator(input_type="auto")
    acc.update(probs[:100], labels[:100])
    acc.reset()
    with pytest.raises(RuntimeError):
        acc.compute()
    acc.update(probs, labels)
    out = acc.compute()
    assert out["ece"] == pytest.approx(_tm(probs, labels), abs=1e-6)
    assert out["nll"] == pytest.approx(negative_log_likelihood(probs, labels), abs=1e-12)
    # forcing "logits" on probabilities re-softmaxes them, so the result must change
    forced = CalibrationAccumulator(input_type="logits")
    forced.update(probs, labels)
    assert abs(forced.compute()["ece"] - out["ece"]) > 1e-3
    with pytest.raises(ValueError):
        CalibrationAccumulator(input_type="softmax")
    assert CalibrationAccumulator.higher_is_better is False
