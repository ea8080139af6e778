"""Robustness page: zero-shot accuracy under FGSM / PGD per model, and the WiSE-FT curve (torch on first use)."""
from __future__ import annotations

from tracer_core.lazy import lazy

from typing import Sequence

np = lazy("numpy")
pd = lazy("pandas")

from .checkpoints import CheckpointModels, eval_set


def robustness_table(cm: CheckpointModels, dataset: str, eps: float = 4 / 255, steps: int = 5,
                     max_samples: int = 256, attacks: Sequence[str] = ("fgsm", "pgd")) -> pd.DataFrame:
    """Zero-shot accuracy, clean and under L∞ attacks, of each model on the first ``max_samples`` images:
    rows (model, role, attack: clean/FGSM/PGD, accuracy, success_rate, n, eps)."""
    import torch

    from tracer_core.analysis.attacks import robustness_eval
    ds = eval_set(cm, dataset, max(int(max_samples), 1))
    rows = []
    with cm.lock, torch.random.fork_rng(devices=[]):
        for role in cm.roles:
            res = robustness_eval(cm.models[role], cm.tokenizer, ds, attacks=tuple(attacks), eps=float(eps),
                                  steps=int(steps), max_samples=int(max_samples))
            base = {"model": cm.role_label(role), "role": role, "n": int(res["n"]), "eps": float(eps)}
            rows.append({**base, "attack": "clean", "accuracy": res["clean_accuracy"], "success_rate": np.nan})
            for a in attacks:
                rows.append({**base, "attack": a.upper(), "accuracy": res[f"{a}_accuracy"],
                             "success_rate": res[f"{a}_success_rate"]})
    return pd.DataFrame(rows, columns=["model", "role", "attack", "accuracy", "success_rate", "n", "eps"])


def _ce_heads(cm: CheckpointModels, id_ds):
    """(head_zs, head_ft, classnames) for runs with a trained linear head (FT-style), else (None, None, None)."""
    import torch

    from tracer_core.models.zeroshot import class_text_embeddings, set_head
    from tracer_core.training.checkpoint import load_checkpoint
    extra = (load_checkpoint(cm.path).get("method") or {}).get("extra0") or {}
    w = extra.get("weight")
    classes = list(set_head(id_ds).classes)      # the classes a head for this set scores
    if not isinstance(w, torch.Tensor) or w.ndim != 2 or w.shape[0] != len(classes):
        return None, None, None
    zs = cm.models["pretrained"]
    with torch.no_grad():   # the FT head starts as the zero-shot head with the logit scale baked in
        head_zs = zs.logit_scale.detach() * class_text_embeddings(zs, cm.tokenizer, classes, list(id_ds.templates))
    return head_zs, w.float(), classes


def wise_curve_frame(cm: CheckpointModels, id_set: str, ood_sets: Sequence[str], alphas: Sequence[float] | None = None,
                     max_samples: int = 500) -> tuple[pd.DataFrame, pd.DataFrame]:
    """WiSE-FT θ_α = (1 − α) θ₀ + α θ_student for each α: (per-α summary, per-α-and-set rows).

    Summary columns: alpha, id_accuracy, ood_accuracy (mean over ``ood_sets``; NaN without one), id_ece,
    ood_ece. Rows: alpha, dataset, split, accuracy, ece, ... (from ``tracer_core.analysis.wise.wise_curve``)."""
    import torch

    from tracer_core.analysis.wise import curve_summary, wise_curve
    alphas = [round(float(a), 4) for a in (alphas if alphas is not None else np.linspace(0, 1, 11))]
    sets = {name: eval_set(cm, name, max_samples) for name in dict.fromkeys([id_set, *ood_sets])}
    pre, student = cm.models["pretrained"], cm.models["student"]
    with cm.lock, torch.random.fork_rng(devices=[]):
        head_zs, head_ft, head_names = _ce_heads(cm, sets[id_set])
        state_zs = {k: v.detach().clone() for k, v in pre.clip.state_dict().items()}
        state_ft = {k: v.detach().clone() for k, v in student.clip.state_dict().items()}
        rows = wise_curve(student, cm.tokenizer, state_zs, state_ft, sets, alphas, id_set=id_set, head_zs=head_zs,
                          head_ft=head_ft, head_classnames=head_names)
    return pd.DataFrame(curve_summary(rows)), pd.DataFrame(rows)
