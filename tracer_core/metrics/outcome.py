"""The one-sentence outcome of a comparison, generated from stored numbers (never a fixed claim).

Input per method label: {"id": ID accuracy, "ood": OOD mean accuracy, "er": effective robustness vs the
WiSE-FT frontier (fractions; NaN when outside the frontier's range), optional "er_ext": ER against the
frontier's end segment extended (an estimate, said as such, used only where "er" is NaN), optional "kl_auc":
area under the teacher-student KL curve}. Numbers are printed as points (x100). The verdict words come from comparisons:
  gap:     ratio = kl_auc[focus] / kl_auc[gap_ref]; "kept a persistent gap" when ratio >= 1.5, else "no larger".
  ER sign: "+" / "-" of ER x 100 at one decimal; "above" / "below" / "level with" each reference's ER
           (|difference| < 0.05 points is level). Where ER is undefined, the same words compare OOD means.
"""
from __future__ import annotations

import math
from typing import Mapping, Sequence

PERSISTENT_GAP_RATIO = 1.5


def _pts(x: float) -> str:
    return f"{100 * x:+.1f}"


def _finite(x) -> bool:
    return x is not None and not math.isnan(float(x))


def _gap_clause(summary: Mapping[str, Mapping], focus: str, gap_ref: str | None, name) -> str:
    if not gap_ref or gap_ref not in summary:
        return ""
    a, b = summary[focus].get("kl_auc"), summary[gap_ref].get("kl_auc")
    if not (_finite(a) and _finite(b)) or b <= 0:
        return ""
    ratio = a / b
    word = "kept a persistent teacher-student gap" if ratio >= PERSISTENT_GAP_RATIO else \
        "kept no larger a teacher-student gap"
    return f"{word} (KL AUC {ratio:.1f}x {name(gap_ref)}'s); "


def _rel(d: float) -> str:
    """The comparison word for a difference ``d`` in points (|d| < 0.05 is level)."""
    return "level with" if abs(d) < 0.05 else ("above" if d > 0 else "below")


def _er_clause(summary: Mapping[str, Mapping], focus: str, refs: Sequence[str], name, frontier: str,
               subject: str) -> str:
    er = summary[focus].get("er")
    if not _finite(er):
        return _outside_clause(summary, focus, refs, name, frontier, subject)
    parts = []
    for r in refs:
        if r in summary and r != focus and _finite(summary[r].get("er")):
            parts.append(f"{_rel(100 * (er - summary[r]['er']))} {name(r)}'s {_pts(summary[r]['er'])}")
    tail = f", {' and '.join(parts)}" if parts else ""
    return (f"{subject} effective robustness against {frontier} was {_pts(er)} points"
            f" (ID {100 * summary[focus]['id']:.1f} %, OOD mean {100 * summary[focus]['ood']:.1f} %){tail}")


def _outside_clause(summary: Mapping[str, Mapping], focus: str, refs: Sequence[str], name, frontier: str,
                    subject: str) -> str:
    """ER undefined (ID outside the frontier's range): say so, give the end-segment estimate if there is one,
    and compare the raw accuracies with each reference (a method ahead on both axes says something)."""
    f = summary[focus]
    text = (f"{subject} ID accuracy ({100 * f['id']:.1f} %) lies outside {frontier} (beyond its ID range), so "
            "it has no effective robustness on this run")
    if _finite(f.get("er_ext")):
        text += f" (extending the frontier's end segment estimates {_pts(f['er_ext'])} points)"
    parts = []
    for r in refs:
        if r in summary and r != focus:
            o, i = 100 * summary[r]["ood"], 100 * summary[r]["id"]
            parts.append(f"{_rel(100 * f['ood'] - o)} {name(r)}'s {o:.1f} % (ID {i:.1f} %)")
    if parts:
        text += f"; its OOD mean {100 * f['ood']:.1f} % is {' and '.join(parts)}"
    return text


def outcome_sentence(summary: Mapping[str, Mapping], focus: str = "tracer", refs: Sequence[str] = ("ft", "tracer_ema"),
                     gap_ref: str | None = "tracer_ema", frontier_of: str = "ft",
                     labels: Mapping[str, str] | None = None, frontier_label: str | None = None) -> str:
    """One sentence on ``focus`` vs ``refs`` from ``summary`` (module docstring). Missing focus -> says so.
    ``frontier_label`` names what ER was measured against (default "the WiSE-FT frontier of <frontier_of>")."""
    name = (lambda k: (labels or {}).get(k, k))
    frontier = frontier_label or f"the WiSE-FT frontier of {name(frontier_of)}"
    if focus not in summary:
        return f"No stored result for {name(focus)} yet: run the comparison to see how it does."
    gap = _gap_clause(summary, focus, gap_ref, name)
    subject = "its" if gap else f"{name(focus)}'s"
    return (f"{name(focus)} {gap}" if gap else "") + _er_clause(summary, focus, refs, name, frontier, subject) + "."
