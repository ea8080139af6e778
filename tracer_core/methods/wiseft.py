"""WiSE-FT (Wortsman et al., CVPR 2022; spec §7): weight-space ensembling of zero-shot and fine-tuned.

    theta_alpha = (1 - alpha) theta_zs + alpha theta_ft        (whole state dict, heads included)

* ``wise_ft_interpolate(state_zs, state_ft, alpha)`` is the pure merge, as the reference ``wise_ft.py``:
  keys in only one state are copied, on a shape mismatch or a non-float tensor the fine-tuned value is
  taken. alpha = 0 returns theta_zs and alpha = 1 returns theta_ft *exactly* (no lerp rounding).
* the WiSE-FT curve of the analysis page (theta_alpha on ID/OOD sets per alpha): ``tracer_core.analysis.wise``.
* ``WiSEFTMethod`` (method "wiseft") fine-tunes with the FT protocol (CE, image tower + zero-shot-
  initialised head), then ``finalize`` replaces the student and head by theta_alpha with
  alpha = ``method_params.wise_alpha`` before the final evaluation and checkpoint.
"""
from __future__ import annotations

from typing import Mapping

import torch

from .classification import CEMethod


def wise_ft_interpolate(state_zs: Mapping[str, torch.Tensor], state_ft: Mapping[str, torch.Tensor],
                        alpha: float) -> dict[str, torch.Tensor]:
    """theta = (1 - alpha) theta_zs + alpha theta_ft per key; returns new tensors on theta_ft's devices."""
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"WiSE-FT alpha must be in [0, 1], got {alpha}")
    out: dict[str, torch.Tensor] = {}
    for key in list(state_zs) + [k for k in state_ft if k not in state_zs]:
        zs, ft = state_zs.get(key), state_ft.get(key)
        if ft is None or zs is None:                      # present in one model only: copy it
            out[key] = (ft if ft is not None else zs).detach().clone()
        elif zs.shape != ft.shape or not ft.is_floating_point():
            out[key] = ft.detach().clone()
        else:   # explicit weights, not lerp: a + 1 * (b - a) is not exactly b in floating point
            zs = zs.detach().to(device=ft.device, dtype=ft.dtype)
            out[key] = zs * (1.0 - alpha) + ft.detach() * alpha
    return out


class WiSEFTMethod(CEMethod):
    name = "wiseft"

    def __init__(self, cfg, student, ctx):
        super().__init__(cfg, student, ctx)
        # theta_zs snapshot before any step, kept on the CPU (it is only read once, in finalize)
        self.zs_state = {k: v.detach().cpu().clone() for k, v in student.clip.state_dict().items()}
        self.zs_head = {k: v.detach().cpu().clone() for k, v in self.head.state_dict().items()}

    @torch.no_grad()
    def finalize(self) -> None:
        alpha = self.cfg.method_params.wise_alpha
        self.student.clip.load_state_dict(wise_ft_interpolate(self.zs_state, self.student.clip.state_dict(), alpha))
        self.head.load_state_dict(wise_ft_interpolate(self.zs_head, self.head.state_dict(), alpha))
