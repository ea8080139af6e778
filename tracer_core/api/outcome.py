"""Home and Live dynamics: the demo's outcome in one sentence, generated from its stored results.

The latest demo run of each preset (tag "demo"): TRACER with a WMA teacher, TRACER with an EMA teacher, FT.
Effective robustness is measured against the WiSE-FT curve of the demo's FT run when one was computed in this
server (ID–OOD page), else against the straight zero-shot–FT line (the two WiSE-FT endpoints, α = 0 and 1,
without evaluating any α between) and the sentence says which. Nothing here is a fixed claim.
"""
from __future__ import annotations

import math

from tracer_core.metrics.outcome import outcome_sentence

from .common import Services, runs_frame
from .frontier import OOD_MEAN, er_tables, known_wise, line_frontier, ood_choices, plane_points, zero_shot_point

DEMO_ROLES = {"tracer": ("tracer", "wma"), "tracer_ema": ("tracer", "ema"), "ft": ("ft", "none")}
DEMO_LABELS = {"tracer": "TRACER-WMA", "tracer_ema": "TRACER-EMA", "ft": "FT"}
LINE_LABEL = "the zero-shot–FT line (WiSE-FT's endpoints α = 0 and 1, no α between evaluated)"


def _latest_demo(services: Services) -> dict[str, dict] | None:
    runs = runs_frame(services, tags=["demo"])      # newest first
    out = {}
    for key, (method, teacher) in DEMO_ROLES.items():
        hit = runs[(runs["method"] == method) & (runs["teacher"].fillna("none") == teacher)] if not runs.empty else runs
        if hit.empty:
            return None
        out[key] = hit.iloc[0].to_dict()
    return out


def demo_outcome(services: Services) -> str | None:
    """The demo's outcome sentence, or None while the latest demo runs have not all finished (or none ran)."""
    demo = _latest_demo(services)
    if demo is None or any(r["status"] != "done" for r in demo.values()):
        return None
    ids = {k: r["run_id"] for k, r in demo.items()}
    pts = plane_points(services, list(ids.values())).set_index("run_id")
    if any(i not in pts.index for i in ids.values()):
        return ("The demo finished, but its runs have no OOD evaluation to compare "
                "(add an OOD set to data.eval_sets).")
    ft = pts.loc[ids["ft"]]
    ft_sets = [s for s in ood_choices(pts.reset_index()) if not math.isnan(ft.get(s, math.nan))]
    curve, label = known_wise(ids["ft"], ft_sets), None
    if curve is None:
        zs = zero_shot_point(services, ft["id_set"], OOD_MEAN, ft_sets)
        curve = line_frontier(zs, ft) if zs is not None else None
        label = LINE_LABEL if zs is not None else "a frontier (none: no zero-shot evaluation is stored)"
    per, _ = er_tables(pts.reset_index(), curve) if curve is not None else (None, None)
    has = per is not None and not per.empty
    er = dict(zip(per["run_id"], per["effective_robustness"])) if has else {}
    ext = dict(zip(per["run_id"], per["er_extended"])) if has else {}
    kl = services.store.summaries(list(ids.values()), ["teacher_student_kl"], ["combined"])
    auc = dict(zip(kl["run_id"], kl["auc_normalized"])) if not kl.empty else {}
    summary = {k: {"id": float(pts.at[i, "id"]), "ood": float(pts.at[i, "ood"]), "er": er.get(i, math.nan),
                   "er_ext": ext.get(i), "kl_auc": auc.get(i)} for k, i in ids.items()}
    return outcome_sentence(summary, labels=DEMO_LABELS, frontier_label=label)
