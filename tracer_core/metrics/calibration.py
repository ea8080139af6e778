r"""Calibration metrics for classifiers: ECE (global and per-batch), MCE, NLL, Brier, reliability bins.

Pure functions over tensors plus one thin accumulator (:class:`CalibrationAccumulator`).
Only ``torch`` and ``math`` are imported; nothing else from ``tracer_core``.

Conventions (shared by every function here)
-------------------------------------------
* ``probs``: ``(N, C)`` class probabilities (rows sum to 1); ``logits``: ``(N, C)`` unnormalised scores;
  ``labels``: ``(N,)`` integer class indices in ``[0, C)``.
* Confidence is the max-softmax probability :math:`\hat p_i = \max_c p_{ic}`; the prediction is
  :math:`\hat y_i = \arg\max_c p_{ic}` (``Tensor.max(dim=1)``: ties resolve like torchmetrics).
* **Binning = torchmetrics 1.9** (``_binning_bucketize``): edges ``e = linspace(0, 1, n_bins + 1)`` in float32,
  bucket ``b = bucketize(conf_f32, e, right=True) - 1``. So regular bins are half-open :math:`[e_b, e_{b+1})`
  (a confidence exactly on an inner edge goes to the bin *above*), and a confidence of exactly ``1.0`` lands in
  an extra degenerate bucket ``b = n_bins`` (``lo = hi = 1.0``). Every bin tensor therefore has
  ``n_bins + 1`` entries. This matters in practice: bf16/float32 softmax saturates to exactly 1.0 often.
* Bin sums are accumulated in float64; the bucket index is computed on float32 confidences with float32 edges,
  exactly as torchmetrics does, so edge cases bin identically.
* Logits are turned into probabilities with ``softmax(logits, dim=1)`` in the dtype given (what torchmetrics
  does); cast them yourself first if you want higher precision.

Protocols (``tracer_algorithm.md`` section 7, pitfall P9)
---------------------------------------------------------
The reference code computes ECE *per evaluation batch* (512, class-sorted loader) and averages the batch ECEs
with weights equal to the batch size. That number is :func:`batch_averaged_ece`. It is **not** the global ECE
(:func:`expected_calibration_error`); report both.
"""
from __future__ import annotations

import math
from typing import Dict, Optional

import torch
from torch import Tensor

__all__ = [
    "reliability_bins",
    "expected_calibration_error",
    "batch_averaged_ece",
    "maximum_calibration_error",
    "negative_log_likelihood",
    "brier_score",
    "CalibrationAccumulator",
]


# ----------------------------------------------------------------------------------------------------------------
# private stages
# ----------------------------------------------------------------------------------------------------------------
def _pick(probs: Optional[Tensor], logits: Optional[Tensor]) -> Tensor:
    """Validate that exactly one of ``probs`` / ``logits`` is given as a floating ``(N, C)`` tensor; return it."""
    if (probs is None) == (logits is None):
        raise ValueError("pass exactly one of `probs` or `logits`")
    x = probs if probs is not None else logits
    if x.ndim != 2 or not x.is_floating_point():
        raise ValueError(f"expected a floating (N, C) tensor, got shape {tuple(x.shape)} dtype {x.dtype}")
    return x


def _to_probs(probs: Optional[Tensor], logits: Optional[Tensor]) -> Tensor:
    """Return ``(N, C)`` probabilities from exactly one of ``probs`` / ``logits`` (softmax over dim 1)."""
    x = _pick(probs, logits)
    return x if probs is not None else torch.softmax(x, dim=1)


def _looks_like_probs(x: Tensor) -> bool:
    """torchmetrics' rule (``normalize_logits_if_needed``): probabilities iff every entry lies in ``[0, 1]``."""
    return bool(((x >= 0) & (x <= 1)).all())


def _check_labels(labels: Tensor, n: int) -> Tensor:
    if labels.ndim != 1 or labels.shape[0] != n:
        raise ValueError(f"labels must have shape ({n},), got {tuple(labels.shape)}")
    if labels.is_floating_point():
        raise ValueError("labels must be integer class indices")
    return labels.long()


def _confidence_correct(p: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
    """``(N, C)`` probs, ``(N,)`` labels -> (confidence ``(N,)``, correct ``(N,)`` float 0/1)."""
    labels = _check_labels(labels, p.shape[0])
    conf, pred = p.max(dim=1)
    return conf, pred.eq(labels.to(pred.device)).to(torch.float64)


def _bin_sums(confidences: Tensor, correct: Tensor, n_bins: int) -> tuple[Tensor, Tensor, Tensor]:
    r"""Per-bucket (count, :math:`\sum \hat p`, :math:`\sum 1[\hat y = y]`), each float64 ``(n_bins + 1,)``."""
    if not isinstance(n_bins, int) or n_bins < 1:
        raise ValueError(f"n_bins must be a positive int, got {n_bins!r}")
    conf32 = confidences.detach().reshape(-1).float()
    if conf32.numel() and not bool(((conf32 >= 0) & (conf32 <= 1)).all()):
        raise ValueError("confidences must lie in [0, 1]")
    edges = torch.linspace(0, 1, n_bins + 1, dtype=torch.float32, device=conf32.device)
    idx = torch.bucketize(conf32, edges, right=True) - 1
    z = torch.zeros(n_bins + 1, dtype=torch.float64, device=conf32.device)
    count = z.index_add(0, idx, torch.ones_like(conf32, dtype=torch.float64))
    conf_sum = z.index_add(0, idx, confidences.detach().reshape(-1).to(torch.float64))
    corr_sum = z.index_add(0, idx, correct.detach().reshape(-1).to(torch.float64))
    return count, conf_sum, corr_sum


def _ece_from_sums(count: Tensor, conf_sum: Tensor, corr_sum: Tensor) -> float:
    r""":math:`\sum_b |S^{acc}_b - S^{conf}_b| / n` which equals :math:`\sum_b (|B_b|/n)|acc_b - conf_b|`."""
    n = float(count.sum())
    if n == 0:
        raise ValueError("ECE of an empty set is undefined")
    return float((corr_sum - conf_sum).abs().sum() / n)


def _mce_from_sums(count: Tensor, conf_sum: Tensor, corr_sum: Tensor) -> float:
    nz = count > 0
    if not bool(nz.any()):
        raise ValueError("MCE of an empty set is undefined")
    return float(((corr_sum[nz] - conf_sum[nz]) / count[nz]).abs().max())


def _bins_from_sums(count: Tensor, conf_sum: Tensor, corr_sum: Tensor, n_bins: int) -> Dict[str, Tensor]:
    edges = torch.linspace(0, 1, n_bins + 1, dtype=torch.float64)
    safe = count.clamp_min(1)
    nan = torch.full_like(count, math.nan)
    return {
        "lo": edges.clone(),  # last bucket: lo = hi = 1.0
        "hi": torch.cat([edges[1:], edges[-1:]]),
        "count": count.cpu(),
        "mean_confidence": torch.where(count > 0, conf_sum / safe, nan).cpu(),
        "accuracy": torch.where(count > 0, corr_sum / safe, nan).cpu(),
    }


# ----------------------------------------------------------------------------------------------------------------
# public functions
# ----------------------------------------------------------------------------------------------------------------
def reliability_bins(confidences: Tensor, correct: Tensor, n_bins: int = 10) -> Dict[str, Tensor]:
    r"""Equal-width reliability-diagram bins on ``[0, 1]`` (torchmetrics' bucket convention).

    For bucket :math:`b` with members :math:`B_b`:
    :math:`\text{conf}_b = \frac{1}{|B_b|}\sum_{i\in B_b}\hat p_i`,
    :math:`\text{acc}_b = \frac{1}{|B_b|}\sum_{i\in B_b} 1[\hat y_i = y_i]`.

    Args:
        confidences: ``(N,)`` top-1 confidences in ``[0, 1]``.
        correct: ``(N,)`` bool or 0/1, whether the top-1 prediction is right.
        n_bins: number of equal-width bins.

    Returns:
        dict of float64 tensors, each ``(n_bins + 1,)``: ``lo``, ``hi`` (bin ``b`` is ``[lo_b, hi_b)``; the last
        entry is the degenerate bucket ``{1.0}`` with ``lo = hi = 1``), ``count``, ``mean_confidence``,
        ``accuracy`` (NaN for empty bins).

    Example:
        >>> b = reliability_bins(torch.tensor([0.05, 0.1, 1.0]), torch.tensor([1, 0, 1]), n_bins=10)
        >>> b["count"].tolist()
        [1.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0]
    """
    if confidences.shape != correct.shape or confidences.ndim != 1:
        raise ValueError(f"confidences and correct must both be (N,), got {tuple(confidences.shape)}"
                         f" and {tuple(correct.shape)}")
    return _bins_from_sums(*_bin_sums(confidences, correct, n_bins), n_bins=n_bins)


def expected_calibration_error(probs: Optional[Tensor] = None, labels: Optional[Tensor] = None,
                               n_bins: int = 10, *, logits: Optional[Tensor] = None) -> float:
    r"""Global (whole-set) expected calibration error over the max-softmax confidence.

    .. math:: \text{ECE} = \sum_{b} \frac{|B_b|}{n}\,\big|\text{acc}_b - \text{conf}_b\big|

    Identical to ``torchmetrics MulticlassCalibrationError(num_classes=C, n_bins=n_bins, norm='l1')`` on the same
    inputs (same bucket edges; sums in float64 instead of float32).

    Args:
        probs: ``(N, C)`` probabilities, or pass ``logits=`` ``(N, C)`` instead (softmax is applied).
        labels: ``(N,)`` integer labels.
        n_bins: number of equal-width bins on ``[0, 1]``.

    Example:
        >>> p = torch.tensor([[0.8, 0.2], [0.6, 0.4]])  # bin 8: |1 - 0.8|, bin 6: |0 - 0.6|
        >>> round(expected_calibration_error(p, torch.tensor([0, 1])), 6)
        0.4
    """
    if labels is None:
        raise ValueError("labels are required")
    conf, correct = _confidence_correct(_to_probs(probs, logits), labels)
    return _ece_from_sums(*_bin_sums(conf, correct, n_bins))


def maximum_calibration_error(probs: Optional[Tensor] = None, labels: Optional[Tensor] = None,
                              n_bins: int = 10, *, logits: Optional[Tensor] = None) -> float:
    r"""Maximum calibration error :math:`\text{MCE} = \max_{b:\,|B_b|>0} |\text{acc}_b - \text{conf}_b|`.

    Equals torchmetrics ``norm='max'``. Shapes as in :func:`expected_calibration_error`.
    """
    if labels is None:
        raise ValueError("labels are required")
    conf, correct = _confidence_correct(_to_probs(probs, logits), labels)
    return _mce_from_sums(*_bin_sums(conf, correct, n_bins))


def batch_averaged_ece(probs: Optional[Tensor] = None, labels: Optional[Tensor] = None, batch_size: int = 512,
                       n_bins: int = 10, *, logits: Optional[Tensor] = None) -> float:
    r"""The reference code's per-batch ECE protocol (``tracer_algorithm.md`` section 7, pitfall P9).

    Split the rows **in the given order** into consecutive batches :math:`\mathcal{B}_1..\mathcal{B}_K` of
    ``batch_size`` (the last may be smaller), compute the ECE of each, and average weighted by batch size:

    .. math:: \text{ECE}_{batch} = \frac{1}{n}\sum_{k} |\mathcal{B}_k|\;\text{ECE}(\mathcal{B}_k)

    To reproduce the paper's numbers the rows must be in the class-sorted loader order and ``batch_size=512``.
    Shapes as in :func:`expected_calibration_error`.
    """
    if labels is None:
        raise ValueError("labels are required")
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    conf, correct = _confidence_correct(_to_probs(probs, logits), labels)
    if conf.shape[0] == 0:
        raise ValueError("ECE of an empty set is undefined")
    return _chunked_ece(conf, correct, batch_size, n_bins)


def _chunked_ece(conf: Tensor, correct: Tensor, batch_size: int, n_bins: int) -> float:
    """(1/n) sum_k |B_k| ECE(B_k) over consecutive chunks of ``batch_size`` rows of (n,) conf / correct."""
    total = 0.0
    for start in range(0, conf.shape[0], batch_size):
        c, a = conf[start:start + batch_size], correct[start:start + batch_size]
        total += c.shape[0] * _ece_from_sums(*_bin_sums(c, a, n_bins))
    return total / conf.shape[0]


def negative_log_likelihood(probs: Optional[Tensor] = None, labels: Optional[Tensor] = None, *,
                            logits: Optional[Tensor] = None, eps: float = 1e-12) -> float:
    r"""Mean negative log-likelihood :math:`\text{NLL} = -\frac{1}{n}\sum_i \log p_{i, y_i}` (nats).

    With ``logits`` it is ``F.cross_entropy(logits, labels)`` computed in float64 (``log_softmax``). With
    ``probs`` the probability is clamped below at ``eps`` so a zero probability gives a large finite value.
    Shapes: ``(N, C)`` and ``(N,)``.
    """
    if labels is None:
        raise ValueError("labels are required")
    x = _pick(probs, logits)
    labels = _check_labels(labels, x.shape[0]).to(x.device)
    if logits is not None:
        logp = torch.log_softmax(logits.detach().to(torch.float64), dim=1)
    else:
        logp = probs.detach().to(torch.float64).clamp_min(eps).log()
    return float(-logp.gather(1, labels[:, None]).mean())


def brier_score(probs: Optional[Tensor] = None, labels: Optional[Tensor] = None, *,
                logits: Optional[Tensor] = None) -> float:
    r"""Multi-class Brier score (Brier 1950), summed over classes and averaged over samples.

    .. math:: \text{BS} = \frac{1}{n}\sum_{i}\sum_{c=1}^{C} \big(p_{ic} - 1[c = y_i]\big)^2 \in [0, 2]

    Convention: **sum** over classes (not the mean over classes that some libraries use, which is this value
    divided by ``C``). Shapes: ``(N, C)`` and ``(N,)``.

    Example:
        >>> round(brier_score(torch.tensor([[0.7, 0.2, 0.1]]), torch.tensor([0])), 6)  # 0.09 + 0.04 + 0.01
        0.14
    """
    if labels is None:
        raise ValueError("labels are required")
    p = _to_probs(probs, logits).detach().to(torch.float64)
    labels = _check_labels(labels, p.shape[0]).to(p.device)
    onehot = torch.zeros_like(p).scatter_(1, labels[:, None], 1.0)
    return float(((p - onehot) ** 2).sum(dim=1).mean())


# ----------------------------------------------------------------------------------------------------------------
# accumulator
# ----------------------------------------------------------------------------------------------------------------
class CalibrationAccumulator:
    r"""Streaming calibration metrics: ``update`` per batch, ``compute`` once, ``reset`` between eval sets.

    State (float64): per-bucket count / confidence sum / correct sum, NLL sum, Brier sum (O(n_bins)), and for
    the per-batch ECE either :math:`\sum_k |\mathcal{B}_k|\,\text{ECE}(\mathcal{B}_k)` over updates or, with
    ``sorted_batch_size``, each row's (confidence, correct, label) (O(n)). ``compute()`` after any sequence of
    updates equals the whole-set functions (ECE, MCE, NLL, Brier, accuracy, bins). ``batch_averaged_ece``
    treats **each update as one batch** by default (it matches :func:`batch_averaged_ece` when updates are the
    loader's batches in order); with ``sorted_batch_size=512`` it is the reference protocol whatever the update
    sizes and order: rows stably sorted by label (the class-sorted loader), consecutive batches of 512 (P9).

    Args:
        n_bins: number of equal-width bins.
        input_type: ``"auto"`` (torchmetrics' rule: probabilities iff every entry is in ``[0, 1]``, else
            softmax), ``"logits"`` or ``"probs"``.
        sorted_batch_size: ``None`` (per-update batches) or the class-sorted protocol's batch size.
    """

    higher_is_better: bool = False
    plot_lower_bound: float = 0.0
    plot_upper_bound: float = 1.0

    def __init__(self, n_bins: int = 10, input_type: str = "auto", sorted_batch_size: int | None = None) -> None:
        if sorted_batch_size is not None and (not isinstance(sorted_batch_size, int) or sorted_batch_size < 1):
            raise ValueError(f"sorted_batch_size must be None or a positive int, got {sorted_batch_size!r}")
        self.sorted_batch_size = sorted_batch_size
        if input_type not in ("auto", "logits", "probs"):
            raise ValueError(f"input_type must be 'auto', 'logits' or 'probs', got {input_type!r}")
        if not isinstance(n_bins, int) or n_bins < 1:
            raise ValueError(f"n_bins must be a positive int, got {n_bins!r}")
        self.n_bins, self.input_type = n_bins, input_type
        self.reset()

    def reset(self) -> None:
        """Clear all state."""
        z = torch.zeros(self.n_bins + 1, dtype=torch.float64)
        self.count, self.conf_sum, self.corr_sum = z.clone(), z.clone(), z.clone()
        self.nll_sum = self.brier_sum = self.batch_ece_sum = 0.0
        self.n = self.n_updates = 0
        self._rows: list[tuple[Tensor, Tensor, Tensor]] = []     # (b,) conf, correct, label per update

    def update(self, logits_or_probs: Tensor, labels: Tensor) -> None:
        """Add one batch: ``(B, C)`` logits or probabilities and ``(B,)`` labels."""
        x = logits_or_probs.detach()
        if x.ndim != 2 or x.shape[0] == 0:
            raise ValueError(f"expected a non-empty (B, C) tensor, got {tuple(x.shape)}")
        is_probs = self.input_type == "probs" or (self.input_type == "auto" and _looks_like_probs(x))
        p = x if is_probs else torch.softmax(x, dim=1)
        conf, correct = _confidence_correct(p, labels)
        sums = _bin_sums(conf, correct, self.n_bins)
        for acc, s in zip((self.count, self.conf_sum, self.corr_sum), sums):
            acc += s.cpu()
        b = x.shape[0]
        kw = {"probs": x} if is_probs else {"logits": x}
        self.nll_sum += b * negative_log_likelihood(labels=labels, **kw)
        self.brier_sum += b * brier_score(p, labels)
        self.batch_ece_sum += b * _ece_from_sums(*sums)
        if self.sorted_batch_size is not None:
            self._rows.append((conf.cpu(), correct.cpu(), labels.detach().cpu()))
        self.n += b
        self.n_updates += 1

    def merge(self, other: "CalibrationAccumulator") -> "CalibrationAccumulator":
        """Add ``other``'s state to this one (e.g. the shards of a data-parallel evaluation, in shard order:
        the sorted protocol keeps rows of one class in the order they were added). Returns self."""
        if (other.n_bins, other.sorted_batch_size) != (self.n_bins, self.sorted_batch_size):
            raise ValueError("merge needs accumulators with the same n_bins and sorted_batch_size")
        for mine, theirs in ((self.count, other.count), (self.conf_sum, other.conf_sum),
                             (self.corr_sum, other.corr_sum)):
            mine += theirs
        self.nll_sum += other.nll_sum
        self.brier_sum += other.brier_sum
        self.batch_ece_sum += other.batch_ece_sum
        self.n += other.n
        self.n_updates += other.n_updates
        self._rows += other._rows
        return self

    def _sorted_batch_ece(self) -> float:
        conf, correct, labels = (torch.cat(col) for col in zip(*self._rows))
        order = torch.argsort(labels, stable=True)               # class-sorted, dataset order within a class
        return _chunked_ece(conf[order], correct[order], self.sorted_batch_size, self.n_bins)

    def compute(self) -> Dict[str, object]:
        """Return ``ece, mce, batch_averaged_ece, nll, brier, accuracy, n`` (floats/int) and ``bins`` (dict)."""
        if self.n == 0:
            raise RuntimeError("compute() called before any update()")
        sums = (self.count, self.conf_sum, self.corr_sum)
        return {
            "ece": _ece_from_sums(*sums),
            "mce": _mce_from_sums(*sums),
            "batch_averaged_ece": self._sorted_batch_ece() if self.sorted_batch_size else self.batch_ece_sum / self.n,
            "nll": self.nll_sum / self.n,
            "brier": self.brier_sum / self.n,
            "accuracy": float(self.corr_sum.sum()) / self.n,
            "n": self.n,
            "bins": _bins_from_sums(*sums, n_bins=self.n_bins),
        }
