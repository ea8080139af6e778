"""Teacher kernel explorer (pure numpy, no training): the same schedules the teachers run."""
from __future__ import annotations

from tracer_core.lazy import lazy

from dataclasses import dataclass

np = lazy("numpy")
pd = lazy("pandas")

from tracer_core.config import ConfigError
from tracer_core.teachers import KINDS
from tracer_core.teachers.schedules import snapshot_weights, teacher_profile, update_weights


@dataclass
class KernelView:
    weights: pd.DataFrame      # teacher, snapshot, weight  (binned when there are many snapshots)
    profile: pd.DataFrame      # teacher, step, pretrained_share, lag
    summary: pd.DataFrame      # one row per teacher
    bin_width: int


def kernel_view(total_steps: int, at_step: int, *, beta: float = 0.5, wma_every: int = 1, ema_every: int = 1,
                m_start: float = 0.05, m_end: float = 0.9, m_warmup: float = 0.2, max_bars: int = 400) -> KernelView:
    """EMA vs WMA teachers from :mod:`tracer_core.teachers.schedules` (the same functions training uses)."""
    if total_steps < 1:
        raise ConfigError("total steps must be >= 1")
    if beta <= 0:
        raise ConfigError(f"beta must be > 0, got {beta}")
    if not (0 <= m_start <= 1 and 0 <= m_end <= 1 and 0 <= m_warmup <= 1):
        raise ConfigError("EMA momentum start, end and warm-up must lie in [0, 1]")
    at_step = int(min(max(at_step, 0), total_steps - 1))
    mixes = {KINDS["ema"].label: update_weights("ema", total_steps, update_every=ema_every, momentum_start=m_start,
                                   momentum_end=m_end, momentum_warmup=m_warmup),
             KINDS["wma"].label: update_weights("wma", total_steps, beta=beta, update_every=wma_every)}
    n = at_step + 2
    width = max(1, -(-n // max_bars))
    w_rows, p_rows, s_rows = [], [], []
    for kind, mix in mixes.items():
        w = snapshot_weights(mix, at_step)
        if width > 1:
            w = np.add.reduceat(w, np.arange(0, n, width))
        w_rows.append(pd.DataFrame({"teacher": kind, "snapshot": np.arange(len(w)) * width, "weight": w}))
        prof = teacher_profile(mix)
        p_rows.append(pd.DataFrame({"teacher": kind, "step": np.arange(total_steps),
                                    "pretrained_share": prof["pretrained_share"], "lag": prof["lag"]}))
        s_rows.append({"teacher": kind, "updates": int((mix > 0).sum()),
                       f"θ₀ share at step {at_step}": float(prof["pretrained_share"][at_step]),
                       f"lag at step {at_step} (steps)": float(prof["lag"][at_step]),
                       "θ₀ share at end": float(prof["pretrained_share"][-1]),
                       "lag at end (steps)": float(prof["lag"][-1])})
    return KernelView(pd.concat(w_rows, ignore_index=True), pd.concat(p_rows, ignore_index=True),
                      pd.DataFrame(s_rows).set_index("teacher"), width)
