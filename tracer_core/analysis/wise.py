"""The WiSE-FT curve (Wortsman et al., CVPR 2022): theta_alpha = (1 - alpha) theta_zs + alpha theta_ft
evaluated on ID/OOD sets for a grid of alphas. The merge itself is ``methods.wiseft.wise_ft_interpolate``."""
from __future__ import annotations

from typing import Mapping, Sequence

import torch
import torch.nn as nn

from ..methods.wiseft import wise_ft_interpolate
from ..training.evaluate import evaluate_model, head_classes

DEFAULT_ALPHAS = tuple(round(0.1 * i, 1) for i in range(11))


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
