"""Low-rank machinery for GRACE (peer_methods.md B.2, B.3 items 3-4, B.7): LoRA without peft, the
low-rank adversarial weight perturbation (LAR-AWP) and the curvature-ranked AWP ranks.

A *unit* is one adapted matrix: q, k or v (row blocks of a fused ``in_proj_weight`` (3w, w), so the
curvature ranking has the paper's q/k/v granularity) or an ``out_proj.weight`` (w, w). Weights are
never patched in place during a step: ``merged_weights`` builds {param name: W_0 + delta} and the
method runs the tower through ``torch.func.functional_call`` with them, so gradients reach the LoRA
factors, PGD needs no parameter gradients, and the AWP perturbation is a constant added on top.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn as nn


@dataclass(frozen=True)
class Unit:
    key: str        # parameter name inside the vision tower
    start: int      # first row of that parameter covered by the unit
    stop: int
    n_in: int
    label: str      # e.g. "transformer.resblocks.0.attn.q"

    @property
    def n_out(self) -> int:
        return self.stop - self.start


def find_units(visual: nn.Module) -> list[Unit]:
    """q, k, v and out of every ``nn.MultiheadAttention`` in the tower, in module order."""
    units: list[Unit] = []
    for name, mod in visual.named_modules():
        if isinstance(mod, nn.MultiheadAttention) and mod.in_proj_weight is not None:
            w, pre = mod.embed_dim, f"{name}." if name else ""
            units += [Unit(f"{pre}in_proj_weight", i * w, (i + 1) * w, w, f"{pre}{q}") for i, q in enumerate("qkv")]
            units.append(Unit(f"{pre}out_proj.weight", 0, w, w, f"{pre}out"))
    if not units:
        raise ValueError("GRACE needs a vision tower with nn.MultiheadAttention blocks (a ViT); "
                         f"{type(visual).__name__} has none")
    return units


def _assemble(base: dict[str, torch.Tensor], units: list[Unit], deltas: list[torch.Tensor]) -> dict[str, torch.Tensor]:
    """{key: W_0[key] + concat of its units' deltas along rows}; units of a key tile its rows in order."""
    pieces: dict[str, list[torch.Tensor]] = {}
    for u, d in zip(units, deltas):
        pieces.setdefault(u.key, []).append(d)
    return {k: base[k] + (torch.cat(ds, 0) if len(ds) > 1 else ds[0]) for k, ds in pieces.items()}


class LoRA(nn.Module):
    """delta_u = (alpha / r) B_u A_u with B_u (n_out, r) = 0 and A_u (r, n_in) Kaiming-uniform (peft's init),
    so the adapted model starts exactly at theta_0. Buffers hold GRACE's curvature EMA h_u and AWP ranks."""

    def __init__(self, units: list[Unit], rank: int, alpha: float):
        super().__init__()
        self.scale = alpha / rank
        self.A = nn.ParameterList([nn.Parameter(torch.empty(rank, u.n_in)) for u in units])
        self.B = nn.ParameterList([nn.Parameter(torch.zeros(u.n_out, rank)) for u in units])
        for a in self.A:
            nn.init.kaiming_uniform_(a, a=math.sqrt(5))
        self.register_buffer("curvature", torch.zeros(len(units)))
        self.register_buffer("awp_ranks", torch.zeros(len(units), dtype=torch.long))

    def deltas(self) -> list[torch.Tensor]:
        return [self.scale * b @ a for a, b in zip(self.A, self.B)]                # each (n_out, n_in)


def merged_weights(base: dict[str, torch.Tensor], units: list[Unit], lora: LoRA) -> dict[str, torch.Tensor]:
    """W = W_0 + LoRA delta per adapted parameter (differentiable in the LoRA factors)."""
    return _assemble(base, units, lora.deltas())


def awp_perturbation(loss_fn: Callable[[dict], torch.Tensor], weights: dict[str, torch.Tensor], units: list[Unit],
                     ranks: list[int], r_max: int, radii: list[float], steps: int) -> dict[str, torch.Tensor]:
    """LAR-AWP inner maximisation (B.3 item 3): Delta_u = (B_u * m_u) A_u, rank mask m_u = [j < rank_u].

    A_u (r_max, n_in) is a fresh Gaussian basis each call and B_u starts at 0; each of ``steps`` ascent
    steps moves B_u along the masked gradient, normalised so Delta_u moves by rho_u (one step reaches
    the rho-ball, B.7), then projects onto ||Delta_u||_F <= rho_u. weights: detached W at theta; ranks:
    python ints (no device syncs in the loop). Returns {key: Delta} (constant) to add to W.
    """
    zero = {k: torch.zeros_like(v) for k, v in weights.items()}
    if steps <= 0 or r_max <= 0 or max(ranks) == 0:
        return zero
    dev = next(iter(weights.values())).device
    mask = [(torch.arange(r_max, device=dev) < r).float() for r in ranks]          # (r_max,) per unit
    a = [torch.randn(r_max, u.n_in, device=dev) / math.sqrt(u.n_in) for u in units]
    b = [torch.zeros(u.n_out, r_max, device=dev, requires_grad=True) for u in units]
    for _ in range(steps):
        with torch.enable_grad():
            deltas = [(bi * m) @ ai for ai, bi, m in zip(a, b, mask)]
            loss = loss_fn(_assemble(weights, units, deltas))
            grads = torch.autograd.grad(loss, b)
        with torch.no_grad():
            for ai, bi, gi, m, rho in zip(a, b, grads, mask, radii):
                g = gi * m                                   # a rank-0 unit gets g = 0 and stays at 0
                bi += rho * g / torch.linalg.matrix_norm(g @ ai).clamp_min(1e-12)
                size = torch.linalg.matrix_norm((bi * m) @ ai)
                bi *= (rho / size.clamp_min(1e-12)).clamp(max=1.0)
    with torch.no_grad():
        return _assemble(zero, units, [(bi * m) @ ai for ai, bi, m in zip(a, b, mask)])


def curvature_scores(grads: dict[str, torch.Tensor], units: list[Unit], n_v: int) -> torch.Tensor:
    """Per-unit mean of the Gauss-Newton diagonal estimate h^ = n_v (g * g) (Eq. 28) -> (n_units,)."""
    return torch.stack([n_v * grads[u.key][u.start:u.stop].float().pow(2).mean() for u in units])


def assign_ranks(curvature: torch.Tensor, r_max: int, percentile: float) -> torch.Tensor:
    """Sharpest units (>= the percentile) get r_max, flattest (<= 100 - percentile) get 0, the rest
    r_max // 2 (the middle-band rule of [reimpl]; the paper's is not confirmed). -> (n_units,) long."""
    hi = torch.quantile(curvature, percentile / 100.0)
    lo = torch.quantile(curvature, 1.0 - percentile / 100.0)
    ranks = torch.full_like(curvature, r_max // 2, dtype=torch.long)
    ranks[curvature <= lo] = 0
    ranks[curvature >= hi] = r_max
    return ranks
