"""Learning-rate and gradient-clipping schedules, exactly as the reference (spec §6). Pure functions."""
from __future__ import annotations

import math


def cosine_lr(step: int, base_lr: float, warmup: int, total_steps: int, min_lr: float = 0.0) -> float:
    """lr(s) = base (s+1)/W for s < W, else 1/2 (1 + cos(pi (s-W)/(T-W))) base + min_lr.

    min_lr is *added* to the cosine (the reference's quirk), not interpolated towards.
    """
    if step < warmup:
        return base_lr * (step + 1) / warmup
    span = max(total_steps - warmup, 1)
    return 0.5 * (1.0 + math.cos(math.pi * (step - warmup) / span)) * base_lr + min_lr


def grad_clip_norm(step: int, g0: float, multiplier: float, total_steps: int) -> float:
    """g(s) = g0 + (g1 - g0) 1/2 (1 - cos(pi min(s, T-1)/(T-1))), g1 = g0 * multiplier; 0 = off."""
    if g0 <= 0:
        return 0.0
    g1 = g0 * multiplier
    denom = max(total_steps - 1, 1)
    return g0 + (g1 - g0) * 0.5 * (1.0 - math.cos(math.pi * min(step, total_steps - 1) / denom))


def steps_for_epochs(epochs: int, n_images: int, batch_size: int) -> int:
    """T = epochs * ceil(n_images / B): the reference counts an epoch as the ImageFolder train loader's
    batches, drop_last=False (spec §1.1; ImageNet-1k, B 512, 10 epochs: 10 * 2503 = 25,030)."""
    if epochs < 1 or n_images < 1 or batch_size < 1:
        raise ValueError(f"steps from epochs needs epochs, images and batch size >= 1, got {epochs}, {n_images}, "
                         f"{batch_size}")
    return epochs * math.ceil(n_images / batch_size)
