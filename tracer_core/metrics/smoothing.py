"""Curve smoothing of one logged series, computed on the full series (never on a downsampled one).

Pure numpy/scipy functions of the value vector ``v`` (shape ``[n]``, in step order). Non-finite values
(NaN, ±inf: a diverged step) are passed through unchanged and do not enter any average, so the smoothed
curve of the finite points is the same as if the non-finite ones had not been logged.

* ``ema`` (default, TensorBoard-compatible, tensorboard PR #639): with ``w = min(weight, 0.999)`` and the
  finite values ``x_1..x_k`` so far, ``m_k = w m_{k-1} + (1 - w) x_k``, ``m_0 = 0``, shown debiased as
  ``m_k / (1 - w^k)`` (the first points are not pulled towards 0). ``weight <= 0`` returns ``v``.
* ``mean`` (running average, W&B's "running average"): the mean of the last ``window`` finite values,
  ``s_k = (1 / min(k, W)) * sum_{j = max(1, k-W+1)..k} x_j``.
* ``gaussian``: ``s_k = sum_j g(k - j) x_j / sum_j g(k - j)`` over finite ``x_j`` with
  ``g(d) = exp(-d^2 / (2 sigma^2))``, ``|d| <= 4 sigma`` (index distance in logged points; the kernel is
  renormalised at the ends and around gaps, so the curve is not pulled towards 0 there).

Because each is defined on the logged points, smoothing the full series and then keeping the downsampled
steps gives a curve that does not depend on how many points the chart shows.
"""
from __future__ import annotations

from tracer_core.lazy import lazy

from dataclasses import dataclass

np = lazy("numpy")

KINDS = ("ema", "mean", "gaussian")
EMA_MAX_WEIGHT = 0.999


@dataclass(frozen=True)
class Smoothing:
    """``kind``: ema | mean | gaussian. ``param``: EMA weight in [0, 1), window (points, >= 1) or sigma."""
    kind: str = "ema"
    param: float = 0.6

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"smoothing kind must be one of {', '.join(KINDS)}, got {self.kind!r}")
        p = float(self.param)
        if not np.isfinite(p) or p < 0 or (self.kind == "ema" and p >= 1) or (self.kind == "mean" and p < 1):
            raise ValueError(f"invalid smoothing parameter {self.param!r} for {self.kind}: ema needs a weight "
                             "in [0, 1), mean a window >= 1, gaussian a sigma >= 0")

    def apply(self, v) -> np.ndarray:
        fn = {"ema": ema, "mean": running_mean, "gaussian": gaussian}[self.kind]
        return fn(v, self.param)


def _split(v) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    v = np.asarray(v, dtype=np.float64)
    ok = np.isfinite(v)
    return v, ok, v[ok]


def ema(v, weight: float) -> np.ndarray:
    """Debiased EMA (module docstring). One C pass (scipy.signal.lfilter) over the finite values."""
    from scipy.signal import lfilter   # scipy loads with the first smoothed chart, not with the store
    v, ok, x = _split(v)
    if weight <= 0 or len(x) == 0:
        return v.copy()
    w = min(float(weight), EMA_MAX_WEIGHT)
    m = lfilter([1.0 - w], [1.0, -w], x)             # m_k = w m_{k-1} + (1-w) x_k, m_0 = 0
    k = np.arange(1, len(x) + 1, dtype=np.float64)
    out = v.copy()
    out[ok] = m / -np.expm1(k * np.log(w))           # / (1 - w^k), accurate for w^k near 1
    return out


def running_mean(v, window: float) -> np.ndarray:
    """Trailing mean of the last ``window`` finite values (module docstring)."""
    v, ok, x = _split(v)
    W = int(window)
    if len(x) == 0 or W <= 1:
        return v.copy()
    c = np.concatenate([[0.0], np.cumsum(x)])
    k = np.arange(1, len(x) + 1)
    lo = np.maximum(k - W, 0)
    out = v.copy()
    out[ok] = (c[k] - c[lo]) / (k - lo)
    return out


def gaussian(v, sigma: float) -> np.ndarray:
    """Gaussian kernel average over logged points, renormalised over the finite ones (module docstring)."""
    v, ok, _ = _split(v)
    if sigma <= 0 or not ok.any():
        return v.copy()
    from scipy.signal import fftconvolve
    r = int(np.ceil(4 * sigma))
    g = np.exp(-np.arange(-r, r + 1) ** 2 / (2.0 * sigma * sigma))
    conv = fftconvolve if len(v) > 2000 else np.convolve      # same sums; FFT is O(n log n) for long series
    x, mask = np.where(ok, v, 0.0), ok.astype(np.float64)
    num = conv(x, g, mode="full")[r:r + len(v)]                 # centred: index k+r of the full output
    den = conv(mask, g, mode="full")[r:r + len(v)]
    out = v.copy()
    out[ok] = num[ok] / den[ok]
    return out
