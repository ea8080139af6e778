"""Per-step teacher–student statistics (spec §5.1), pure functions of two logit matrices.

"img" = image->text rows of Z, "text" = text->image rows of Z^T, "combined" = mean of the two.
Ground truth is the diagonal (the paired caption), not the class label (pitfall P18).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

EPS = 1e-8


def entropy_rows(p: torch.Tensor) -> torch.Tensor:
    """H_i = -sum_j p_ij ln(p_ij + 1e-8); p (B, C) rows on the simplex -> (B,)."""
    return -(p * torch.log(p + EPS)).sum(dim=-1)


def kl_rows_batchmean(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """KL(p||q) = (1/B) sum_i sum_j p_ij (ln p_ij - ln(q_ij + 1e-8)), as F.kl_div(log(q+eps), p, batchmean)."""
    return F.kl_div(torch.log(q + EPS), p, reduction="batchmean")


def prediction_diversity(p: torch.Tensor) -> torch.Tensor:
    """Gini-type score mean_i [1 - sum_j p_(j) (2 C_j - p_(j) - 1)], p_(j) sorted descending, C_j cumsum.

    As the reference codes it, this is identically 1 for any distribution (sum_j 2 p_j C_j =
    (sum p)^2 + sum p^2, so the bracket is 0). Kept verbatim for parity with the logged series; do not
    read it as a diversity signal (see README, "Notes on the reference").
    """
    ps, _ = torch.sort(p, dim=-1, descending=True)
    c = torch.cumsum(ps, dim=-1)
    return (1.0 - (ps * (2.0 * c - ps - 1.0)).sum(dim=-1)).mean()


def topk_overlap(z_t: torch.Tensor, z_s: torch.Tensor, k: int = 5) -> torch.Tensor:
    """(1/(kB)) sum_i |topk(z_t[i]) ∩ topk(z_s[i])|."""
    k = min(k, z_t.shape[-1])
    a = torch.zeros_like(z_t, dtype=torch.bool).scatter_(-1, z_t.topk(k, dim=-1).indices, True)
    b = torch.zeros_like(z_s, dtype=torch.bool).scatter_(-1, z_s.topk(k, dim=-1).indices, True)
    return (a & b).sum(dim=-1).float().mean() / k


def _direction(z_t: torch.Tensor, z_s: torch.Tensor) -> dict[str, torch.Tensor]:
    """All statistics for one direction; z_t, z_s (B, C) logits with the target at the diagonal."""
    p, q = F.softmax(z_t, dim=-1), F.softmax(z_s, dim=-1)
    b = z_t.shape[0]
    diag = torch.arange(b, device=z_t.device)
    t_pred, s_pred = p.argmax(-1), q.argmax(-1)
    ent = entropy_rows(p).mean()
    t_acc, s_acc = (t_pred == diag).float().mean(), (s_pred == diag).float().mean()
    return {
        "teacher_avg_entropy": ent,
        "teacher_avg_confidence": p.max(dim=-1).values.mean(),
        "teacher_student_agreement": (t_pred == s_pred).float().mean(),
        "teacher_student_kl": kl_rows_batchmean(p, q),
        "teacher_student_top5_alignment": topk_overlap(z_t, z_s, 5),
        "teacher_prediction_diversity": prediction_diversity(p),
        "teacher_accuracy": t_acc,
        "student_accuracy": s_acc,
        "teacher_student_accuracy_diff": t_acc - s_acc,
        "teacher_gt_prob": p[diag, diag].mean(),
        "student_gt_prob": q[diag, diag].mean(),
        "teacher_effective_temperature": math.log(b) / ent.clamp_min(EPS),   # tensor, like the others
    }


@torch.no_grad()
def teacher_student_stats(teacher_logits: torch.Tensor, student_logits: torch.Tensor,
                          teacher_logits_text: torch.Tensor | None = None,
                          student_logits_text: torch.Tensor | None = None) -> dict[tuple[str, str], float]:
    """Spec §5.1 statistics of teacher vs student image->text logits Z (B, B).

    The text->image matrices default to the transposes (Z^T), which is what s G F^T equals. Returns
    floats keyed ``(stat, context)`` with context "img", "text" and "combined" (mean of the two; top-5
    alignment has no combined value, as in the reference): the series names and contexts the store keeps.
    """
    zt_t = teacher_logits.t() if teacher_logits_text is None else teacher_logits_text
    zs_t = student_logits.t() if student_logits_text is None else student_logits_text
    img = _direction(teacher_logits.float(), student_logits.float())
    txt = _direction(zt_t.float(), zs_t.float())
    keys = list(img)
    # one device->host copy for all 24 values (a float() per statistic would sync the GPU 24 times)
    values = torch.stack([torch.as_tensor(img[k], dtype=torch.float32) for k in keys] +
                         [torch.as_tensor(txt[k], dtype=torch.float32) for k in keys]).tolist()
    v_img, v_txt = dict(zip(keys, values[:len(keys)])), dict(zip(keys, values[len(keys):]))
    out: dict[tuple[str, str], float] = {}
    for key in keys:
        out[(key, "img")] = v_img[key]
        out[(key, "text")] = v_txt[key]
        if key != "teacher_student_top5_alignment":
            out[(key, "combined")] = 0.5 * (v_img[key] + v_txt[key])
    return out
