"""Simulated-OOD views for FT2B (RECONSTRUCTION of FSR's generator Q, peer_methods.md A.3 row 1).

A RandAugment-style strong view, batched in torch: every image draws ``num_ops`` operations (with
replacement) from ``ops`` and a magnitude U(0, magnitude) for each, then Cutout with p = 0.5. The
authors' own DAC-MR code makes its strong view the same way (random policy + Cutout).

Leakage (A.3): the evaluation shifts of the default scenario are colour re-inking (colored_mnist),
noise / blur / elastic / jpeg / contrast (corrupted_mnist), resolution (sklearn_digits) and fonts
(heldout_fonts). The default ops (affine, posterize, solarize) and Cutout avoid those families, so the
OOD numbers measure robustness rather than augmentation coverage (posterize's few grey levels are
only loosely related to sklearn_digits' 17, whose shift is mainly resolution). "invert", "colour",
"noise" and "blur" exist for ablations and do overlap with evaluation shifts.

Images are (B, 3, H, W) in [0, 1]; every op keeps that range. Randomness comes from torch's global
generator (seeded per run), drawn on the images' device.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def _affine(x: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    """Rotation up to 30 m deg, shear up to 0.3 m, scale 1 +- 0.2 m, shift up to 0.15 m of the side."""
    b = x.shape[0]
    u = (torch.rand(b, 5, device=x.device) * 2 - 1) * m[:, None]            # (B, 5) in [-m, m]
    ang = u[:, 0] * math.radians(30)
    shear, scale = u[:, 1] * 0.3, 1 + u[:, 2] * 0.2
    cos, sin = torch.cos(ang) / scale, torch.sin(ang) / scale
    theta = torch.stack([torch.stack([cos, -sin + shear, u[:, 3] * 0.3], 1),
                         torch.stack([sin, cos, u[:, 4] * 0.3], 1)], 1)     # (B, 2, 3); shift in [-1, 1] coords
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def _posterize(x: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    bits = (8 - torch.round(m * 6)).clamp(2, 8)                              # 8 -> 2 bits as m -> 1
    levels = (2 ** bits - 1)[:, None, None, None]
    return torch.round(x * levels) / levels


def _solarize(x: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    thr = (1 - m)[:, None, None, None]                                       # m = 0: no change
    return torch.where(x >= thr, 1 - x, x)


def _invert(x: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    w = m[:, None, None, None].clamp(0, 1)
    return x * (1 - w) + (1 - x) * w


def _colour(x: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    gain = 1 - torch.rand(x.shape[0], 3, 1, 1, device=x.device) * m[:, None, None, None]
    return x * gain


def _noise(x: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    return (x + torch.randn_like(x) * 0.15 * m[:, None, None, None]).clamp(0, 1)


def _blur(x: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    k = torch.full((x.shape[1], 1, 3, 3), 1 / 9, device=x.device, dtype=x.dtype)
    blurred = F.conv2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), k, groups=x.shape[1])
    w = m[:, None, None, None]
    return x * (1 - w) + blurred * w


OPS = {"affine": _affine, "posterize": _posterize, "solarize": _solarize, "invert": _invert,
       "colour": _colour, "noise": _noise, "blur": _blur}


def cutout(x: torch.Tensor, frac: float, p: float = 0.5) -> torch.Tensor:
    """Zero a square of side frac * H at a random place in a random half of the images."""
    b, _, h, w = x.shape
    side = max(1, int(round(frac * h)))
    cy = torch.randint(0, h, (b, 1, 1), device=x.device)
    cx = torch.randint(0, w, (b, 1, 1), device=x.device)
    ys = torch.arange(h, device=x.device)[None, :, None]
    xs = torch.arange(w, device=x.device)[None, None, :]
    hole = ((ys - cy).abs() <= side // 2) & ((xs - cx).abs() <= side // 2)  # (B, H, W)
    hole &= (torch.rand(b, 1, 1, device=x.device) < p)
    return x.masked_fill(hole[:, None], 0.0)


def simulate_ood(images: torch.Tensor, ops=("affine", "posterize", "solarize"), num_ops: int = 2,
                 magnitude: float = 0.5, cutout_frac: float = 0.25) -> torch.Tensor:
    """(B, 3, H, W) in [0, 1] -> a strong view of the same shape and range (see the module doc).

    Each op runs on the whole batch and is kept only where an image drew it: cheap at these sizes and
    free of per-image Python loops.
    """
    x = images
    b = x.shape[0]
    names = list(ops)
    for _ in range(num_ops):
        choice = torch.randint(len(names), (b,), device=x.device)             # (B,) op index per image
        mag = torch.rand(b, device=x.device) * magnitude                        # (B,) U(0, magnitude)
        out = x
        for i, name in enumerate(names):
            keep = (choice == i)[:, None, None, None]
            out = torch.where(keep, OPS[name](x, mag), out)
        x = out
    if cutout_frac > 0:
        x = cutout(x, cutout_frac)
    return x.clamp(0, 1)
