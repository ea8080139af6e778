"""WiSE-FT (Wortsman et al., CVPR 2022; spec §7): weight-space ensembling of zero-shot and fine-tuned.

    theta_alpha = (1 - alpha) theta_zs + alpha theta_ft        (whole state dict, heads included)

* ``wise_ft_interpolate(state_zs, state_ft, alpha)`` is the pure merge, as the reference ``wise_ft.py``:
  keys in only one state are copied, on a shape mismatch or a non-float tensor the fine-tuned value is
  taken. alpha = 0 returns theta_zs and alpha = 1 returns theta_ft *exactly* (no lerp rounding).
* ``wise_curve(...)`` evaluates theta_alpha on ID/OOD sets for a grid of alphas (the analysis page).
* ``WiSEFTMethod`` (method "wiseft") fine-tunes with the FT protocol (CE, image tower + zero-shot-
  initialised head), then ``finalize`` replaces the student and head by theta_alpha with
  alpha = ``method_params.wise_alpha`` before the final evaluation and checkpoint.
"""
from __future__ import annotations

from typing import Mapping, Sequence

import torch
import torch.nn as nn

from .classification import CEMethod

DEFAULT_ALPHAS = tuple(round(0.1 * i, 1) for i in range(11))


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


@torch.no_grad()
def wise_curve(model, tokenizer, state_zs: Mapping[str, torch.Tensor], state_ft: Mapping[str, torch.Tensor],
               eval_sets: Mapping[str, object], alphas: Sequence[float] = DEFAULT_ALPHAS, *,
               id_set: str | None = None, head_zs: torch.Tensor | None = None, head_ft: torch.Tensor | None = None,
               head_classnames: Sequence[str] | None = None, batch_size: int = 256, autocast=None) -> list[dict]:
    """Evaluate theta_alpha for every alpha on every set.

    model: a ``ClipModel`` whose ``clip`` takes the states (restored afterwards). state_zs / state_ft:
    ``clip`` state dicts (e.g. the pretrained model and a run checkpoint's ``"student"``). head_zs /
    head_ft: optional (C, d) head weights (a CE run's ``method["extra0"]["weight"]``), interpolated too and
    used for the sets whose class names equal ``head_classnames``; other sets use the zero-shot text head
    of theta_alpha. id_set: the ID set's name (default: the first set). Returns one row per (alpha, set):
    {"alpha", "dataset", "split": "id"|"ood", "accuracy", "ece", "ece_batch", "mce", "nll", "brier"}.
    """
    from ..training.evaluate import evaluate_model, head_classes   # lazy: training imports methods

    device = next(model.parameters()).device
    id_set = id_set or next(iter(eval_sets))
    original = {k: v.detach().clone() for k, v in model.clip.state_dict().items()}
    rows: list[dict] = []
    try:
        for alpha in alphas:
            model.clip.load_state_dict(wise_ft_interpolate(state_zs, state_ft, float(alpha)))
            head = None
            if head_zs is not None and head_ft is not None:
                w = wise_ft_interpolate({"w": head_zs}, {"w": head_ft}, float(alpha))["w"].to(device)
                head = nn.Linear(w.shape[1], w.shape[0], bias=False).to(device)
                head.weight.copy_(w)
            for name, ds in eval_sets.items():
                use = head if head is not None and head_classes(ds) == list(head_classnames or []) else None
                res = evaluate_model(model, tokenizer, ds, batch_size, device, head=use, autocast=autocast)
                rows.append({"alpha": float(alpha), "dataset": name, "split": "id" if name == id_set else "ood",
                             **res["metrics"]})
    finally:
        model.clip.load_state_dict(original)
    return rows


def curve_summary(rows: Sequence[dict]) -> list[dict]:
    """Per alpha: ID accuracy/ECE and the mean over OOD sets -> rows {"alpha", "id_accuracy", "id_ece",
    "ood_accuracy", "ood_ece"} sorted by alpha (the WiSE-FT plot's points)."""
    out = []
    for alpha in sorted({r["alpha"] for r in rows}):
        at = [r for r in rows if r["alpha"] == alpha]
        ident = [r for r in at if r["split"] == "id"]
        ood = [r for r in at if r["split"] == "ood"]

        def mean(rs, key):
            return sum(r[key] for r in rs) / len(rs) if rs else float("nan")

        out.append({"alpha": alpha, "id_accuracy": mean(ident, "accuracy"), "id_ece": mean(ident, "ece"),
                    "ood_accuracy": mean(ood, "accuracy"), "ood_ece": mean(ood, "ece")})
    return out
