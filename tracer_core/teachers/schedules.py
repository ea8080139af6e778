"""Pure teacher schedules (no torch): the same functions drive the teachers and the kernel explorer.

Every moving-average teacher here is a sequence of in-place mixes
    teacher <- (1 - w_s) * teacher + w_s * student        (after the optimizer step of global step s)
so a teacher is fully described by its per-step mixing weights w_s (0 = no update at step s).
``update_weights`` returns them; ``snapshot_weights`` replays them into the weight that each student
snapshot theta_0 (pretrained), theta_1, ... holds inside the teacher.
"""
from __future__ import annotations

from tracer_core.lazy import lazy

import math

np = lazy("numpy")

EMA_DEFAULT_EVERY = 500   # spec §3.1 / pitfall P4: HEAD EMA replaces update_every <= 0 by 500


def beta_kernel(n: int, total_steps: int, beta: float) -> float:
    """kappa(n) = BetaPDF((n + 0.5) / (T + 1); beta, beta)   (spec §2; n = number of updates so far).

    Written with lgamma instead of scipy so it is cheap per step; equals scipy.stats.beta(b, b).pdf.
    """
    x = (n + 0.5) / (total_steps + 1.0)
    log_b = 2.0 * math.lgamma(beta) - math.lgamma(2.0 * beta)        # log B(beta, beta)
    return math.exp((beta - 1.0) * (math.log(x) + math.log1p(-x)) - log_b)


def momentum_schedule(step: int, total_steps: int, start: float = 0.05, end: float = 0.9,
                      warmup: float = 0.2) -> float:
    """EMA momentum m(s) (weight on the *old* teacher), spec §3.1:
    m(s) = m_src + (m_tar - m_src) * s / (w T) for s < w T, else m_tar."""
    warm = warmup * total_steps
    if warm > 0 and step < warm:
        return start + (end - start) * step / warm
    return end


def wma_should_update(step: int, total_steps: int, every: int) -> bool:
    """Spec §2 gating: every <= 0 -> every step; f > 0 -> step % f == 0 or the last step."""
    return every <= 0 or step % every == 0 or step == total_steps - 1


def ema_should_update(step: int, total_steps: int, every: int) -> bool:
    """Spec §3.1 gating: f = every if > 0 else 500; fires when step % f == 0 (the `s == T` clause never fires)."""
    f = every if every > 0 else EMA_DEFAULT_EVERY
    return step % f == 0


def wma_mixing_weight(n_next: int, total_steps: int, beta: float, running_sum: float) -> tuple[float, float]:
    """Weight of the incoming student at update number n_next, and the new running sum.
    omega = kappa(n) / (S + kappa(n)); S <- S + kappa(n)  (spec §2)."""
    w = beta_kernel(n_next, total_steps, beta)
    return w / (running_sum + w), running_sum + w


def update_weights(kind: str, total_steps: int, *, beta: float = 0.5, update_every: int = 1,
                   momentum_start: float = 0.05, momentum_end: float = 0.9,
                   momentum_warmup: float = 0.2) -> np.ndarray:
    """Mixing weight w_s of the student for each global step s = 0..T-1 (0 where no update)."""
    w = np.zeros(total_steps)
    if kind == "wma":
        n, s_sum = 0, beta_kernel(0, total_steps, beta)
        for s in range(total_steps):
            if wma_should_update(s, total_steps, update_every):
                n += 1
                w[s], s_sum = wma_mixing_weight(n, total_steps, beta, s_sum)
    elif kind == "ema":
        for s in range(total_steps):
            if ema_should_update(s, total_steps, update_every):
                w[s] = 1.0 - momentum_schedule(s, total_steps, momentum_start, momentum_end, momentum_warmup)
    elif kind not in ("frozen", "none"):
        raise ValueError(f"unknown teacher kind {kind!r}")
    return w


def snapshot_weights(mix: np.ndarray, at_step: int) -> np.ndarray:
    """Weights of theta_0 .. theta_{at_step+1} inside the teacher after the update of step ``at_step``.

    theta_{s+1} is the student after the optimizer step of global step s (what update s mixes in).
    Replays teacher <- (1 - w) teacher + w student exactly; the result sums to 1.
    """
    weights = np.zeros(at_step + 2)
    weights[0] = 1.0
    for s in range(at_step + 1):
        if mix[s] > 0:
            weights[: s + 1] *= 1.0 - mix[s]
            weights[s + 1] += mix[s]
    return weights


def teacher_profile(mix: np.ndarray) -> dict[str, np.ndarray]:
    """Per step: share of the pretrained weights theta_0 and the teacher's lag behind the student
    (in steps: (s + 1) - sum_j j * weight_j). O(T) recurrences, equal to replaying snapshot_weights."""
    total = len(mix)
    share0 = np.empty(total)
    lag = np.empty(total)
    p0, mean_idx = 1.0, 0.0
    for s in range(total):
        if mix[s] > 0:
            p0 *= 1.0 - mix[s]
            mean_idx = (1.0 - mix[s]) * mean_idx + mix[s] * (s + 1)
        share0[s] = p0
        lag[s] = (s + 1) - mean_idx
    return {"pretrained_share": share0, "lag": lag}
