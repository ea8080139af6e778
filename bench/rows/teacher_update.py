"""Fused WMA teacher update (tracer_core.teachers: one torch._foreach_lerp_) vs the reference's loop at
ViT-B/16 size (~150 M parameters): time and peak extra memory, interleaved.

The peer is written here in the style of the official TRACER code's ``GeneralMovingAverage.update``
(src/models/beta_moving_average.py, described in shared/reference/tracer_algorithm.md §2, the CLIPood Beta
Moving Average): a Python loop over zip(teacher.parameters(), student.parameters()) doing
``p_avg.data = (p_avg.data + r * p.data) / (1 + r)``, which allocates two temporaries per parameter.
Same arithmetic (omega = r / (1 + r)); no code is copied.
"""
from __future__ import annotations

import threading
import time

from ..common import interleave, paired_ratio, spread
from ..suite import Row


def _shapes(quick: bool) -> list[tuple]:
    """ViT-B/16's parameter shapes (open_clip, built on the meta device: no memory, no init); quick: ~1/8."""
    import open_clip
    import torch
    from open_clip.model import CLIP
    cfg = open_clip.get_model_config("ViT-B-16")
    with torch.device("meta"):                  # create_model would .to() a device; the bare class does not
        model = CLIP(**cfg)
    shapes = [tuple(p.shape) for p in model.parameters()]
    if quick:
        keep, n = [], 0
        for s in shapes:
            keep.append(s)
            n += torch.Size(s).numel()
            if n > 20_000_000:
                break
        shapes = keep
    return shapes


class _Peak:
    """Peak extra resident memory during a block (CPU: /proc sampled every ms; CUDA: the allocator's peak)."""

    def __init__(self, device: str):
        self.device, self.peak_mb = device, 0.0

    @staticmethod
    def _rss() -> float:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * 4096 / 2 ** 20

    def __enter__(self):
        import torch
        if self.device.startswith("cuda"):
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self.base = torch.cuda.memory_allocated() / 2 ** 20
        else:
            self.base, self.stop = self._rss(), False
            self.thread = threading.Thread(target=self._sample, daemon=True)
            self.thread.start()
        return self

    def _sample(self):
        while not self.stop:
            self.peak_mb = max(self.peak_mb, self._rss() - self.base)
            time.sleep(0.001)

    def __exit__(self, *exc):
        import torch
        if self.device.startswith("cuda"):
            torch.cuda.synchronize()
            self.peak_mb = torch.cuda.max_memory_allocated() / 2 ** 20 - self.base
        else:
            self.stop = True
            self.thread.join()
            self.peak_mb = max(self.peak_mb, self._rss() - self.base)


def fused_vs_reference(quick: bool, device: str) -> list[Row]:
    import torch
    import torch.nn as nn

    from tracer_core.teachers import create_teacher
    shapes = _shapes(quick)
    student = nn.ParameterList([nn.Parameter(torch.randn(s, device=device) * 0.02) for s in shapes])
    teacher = create_teacher("wma", student, total_steps=1000, beta=0.5)       # deep copy, as in a run
    ref_avg = [p.detach().clone() for p in student]                         # the reference's own teacher copy
    n_params = sum(p.numel() for p in student)
    step, peaks = {"n": 0}, {"fused": [], "reference": []}

    def fused() -> float:
        with _Peak(device) as pk:
            t0 = time.perf_counter()
            teacher.update(student, step["n"])
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            dt = time.perf_counter() - t0
        step["n"] += 1
        peaks["fused"].append(pk.peak_mb)
        return dt

    def reference() -> float:
        r = teacher.last_weight / (1.0 - teacher.last_weight) if teacher.last_weight < 1 else 1.0  # omega = r/(1+r)
        with _Peak(device) as pk, torch.no_grad():
            t0 = time.perf_counter()
            for p_avg, p in zip(ref_avg, student.parameters()):
                p_avg.data = (p_avg.data + r * p.data) / (1 + r)
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            dt = time.perf_counter() - t0
        peaks["reference"].append(pk.peak_mb)
        return dt

    fused(), reference()                                   # warm-up: first touch of the pages
    peaks = {"fused": [], "reference": []}
    t = interleave({"fused": fused, "reference": reference}, 3 if quick else 7)
    med, lo, hi = paired_ratio(t["reference"], t["fused"])
    pf, pr = max(peaks["fused"]), max(peaks["reference"])
    return [Row(f"fused WMA update at ViT-B/16 size ({n_params / 1e6:.0f} M params) vs the reference loop",
                "reference-style per-parameter loop (TRACER src/models/beta_moving_average.py)",
                f"{spread(t['fused'])[0]:.3f} s, +{pf:.0f} MB peak", f"{spread(t['reference'])[0]:.3f} s, "
                f"+{pr:.0f} MB peak", med, lo, hi, "≥ 3× faster", 3.0, higher_is_better=True,
                note=f"ratio = reference / fused time; {device}")]
