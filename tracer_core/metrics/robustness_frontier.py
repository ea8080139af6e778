"""Effective robustness against the WiSE-FT frontier, seed statistics and "accuracy on the line" (numpy-free).

Pure functions on plain numbers; no torch, no store. The frontier is traced by WiSE-FT (Wortsman et al. 2022):
the points (ID accuracy, OOD accuracy) of theta_alpha = (1 - alpha) theta_zs + alpha theta_ft, alpha = 0..1.

* Frontier (``frontier_ood``): the WiSE path joins the points in alpha order by straight segments. ID accuracy
  need not be monotone in alpha (it may fold back near alpha = 1), so the path is not always a function of ID.
  CHOICE: the frontier at ID x is the **upper envelope** of the path,
      F(x) = max over segments [p_k, p_{k+1}] whose ID range contains x of the linear interpolation at x,
  i.e. the best OOD the WiSE family reaches at that ID. Where ID is monotone this is plain linear
  interpolation between the points sorted by ID. A vertical segment (equal IDs) contributes its higher end.
* Outside the path's ID range, F is undefined: ``frontier_ood`` returns NaN with position "below" / "above"
  (default), or, with ``extrapolate=True``, the straight line through the two extreme points on that side
  (the lowest-ID / highest-ID vertex and its neighbour in ID order), flagged "extrapolated-below/above".
  CHOICE, for a path that folds back near alpha = 1 (the highest-ID point is not the last): above the range
  the extension is max(that line, the highest OOD on the path), so a falling end segment cannot make a run
  look robust for OOD accuracy WiSE-FT already reached; below it a falling segment is held flat at the
  lowest-ID point's OOD. It is an estimate either way, reported beside ER, never as ER.
* Effective robustness (Taori et al. 2020) of a run at (id, ood): ER = ood - F(id), in the same unit as the
  inputs (fractions here; x100 for points).
* Accuracy on the line (Miller et al. 2021): per OOD set, the Pearson correlation over runs of the
  transformed OOD accuracy with the transformed ID accuracy. ``space`` = "probit" (Miller et al.'s axes:
  Phi^-1(acc)), "logit" (log(p / (1 - p)), Taori et al.'s logit-scaled axes) or "linear". Accuracies are
  clipped to [1e-4, 1 - 1e-4] before the transform so 0 and 1 stay finite.
"""
from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from typing import Iterable, Mapping, Sequence

_CLIP = 1e-4


@dataclass(frozen=True)
class FrontierValue:
    ood: float          # F(id); NaN outside the range unless extrapolated
    position: str       # "inside" | "below" | "above" | "extrapolated-below" | "extrapolated-above"


def frontier_points(rows: Iterable[Mapping]) -> list[tuple[float, float, float]]:
    """WiSE rows -> [(alpha, id, ood)] in alpha order. Rows carry "alpha" and "id_accuracy"/"ood_accuracy"
    (``curve_summary``'s keys) or "id"/"ood"; NaN points are dropped. Needs >= 2 distinct alphas."""
    pts = []
    for r in rows:
        idv = r["id_accuracy"] if "id_accuracy" in r else r["id"]
        oodv = r["ood_accuracy"] if "ood_accuracy" in r else r["ood"]
        if not (math.isnan(float(idv)) or math.isnan(float(oodv))):
            pts.append((float(r["alpha"]), float(idv), float(oodv)))
    pts.sort()
    if len({p[0] for p in pts}) < 2:
        raise ValueError(f"a WiSE-FT frontier needs points at >= 2 distinct alphas, got {len(pts)} point(s)")
    return pts


def _envelope(pts: Sequence[tuple[float, float, float]], x: float) -> float:
    """max over alpha-order segments covering x of the interpolated OOD; NaN when none covers x."""
    best = -math.inf
    for (_, x0, y0), (_, x1, y1) in zip(pts, pts[1:]):
        lo, hi = min(x0, x1), max(x0, x1)
        if not lo <= x <= hi:
            continue
        y = max(y0, y1) if hi == lo else y0 + (y1 - y0) * (x - x0) / (x1 - x0)
        best = max(best, y)
    return best if best > -math.inf else math.nan


def frontier_ood(rows: Iterable[Mapping], id_acc: float, extrapolate: bool = False) -> FrontierValue:
    """F(id_acc) on the WiSE-FT frontier (module docstring for the envelope and the out-of-range rule)."""
    pts = frontier_points(rows)
    ids = sorted(pts, key=lambda p: (p[1], p[2]))
    if ids[0][1] <= id_acc <= ids[-1][1]:
        return FrontierValue(_envelope(pts, id_acc), "inside")
    side = "below" if id_acc < ids[0][1] else "above"
    if not extrapolate:
        return FrontierValue(math.nan, side)
    (_, x0, y0), (_, x1, y1) = (ids[0], ids[1]) if side == "below" else (ids[-2], ids[-1])
    if x1 == x0:
        return FrontierValue(math.nan, side)
    line = y0 + (y1 - y0) * (id_acc - x0) / (x1 - x0)
    if side == "above":     # never below the best OOD the path reached (a fold must not credit a run)
        return FrontierValue(max(line, max(p[2] for p in pts)), "extrapolated-above")
    # below: a falling end segment (a fold) would raise the frontier as ID drops; hold it flat instead
    return FrontierValue(line if y1 >= y0 else y0, "extrapolated-below")


def effective_robustness(rows: Iterable[Mapping], id_acc: float, ood_acc: float,
                         extrapolate: bool = False) -> dict:
    """ER = ood_acc - F(id_acc). Returns {"effective_robustness", "frontier_ood", "position"}; ER is NaN
    where F is (outside the frontier's ID range without ``extrapolate``)."""
    f = frontier_ood(rows, id_acc, extrapolate)
    return {"effective_robustness": ood_acc - f.ood, "frontier_ood": f.ood, "position": f.position}


def seed_stats(values: Iterable[float]) -> dict:
    """{"mean", "std" (sample, ddof 1), "sem" = std / sqrt(n), "n"} over the finite values; std/sem are NaN
    for n < 2 and everything is NaN for n = 0."""
    v = [float(x) for x in values if x is not None and not math.isnan(float(x))]
    if not v:
        return {"mean": math.nan, "std": math.nan, "sem": math.nan, "n": 0}
    sd = statistics.stdev(v) if len(v) > 1 else math.nan
    return {"mean": statistics.fmean(v), "std": sd, "sem": sd / math.sqrt(len(v)), "n": len(v)}


def transform(acc: float, space: str = "probit") -> float:
    """Accuracy -> axis value: probit Phi^-1(p), logit log(p/(1-p)) or linear p, p clipped to [1e-4, 1-1e-4]."""
    if space == "linear":
        return float(acc)
    p = min(max(float(acc), _CLIP), 1 - _CLIP)
    if space == "probit":
        return statistics.NormalDist().inv_cdf(p)
    if space == "logit":
        return math.log(p / (1 - p))
    raise ValueError(f"space must be 'probit', 'logit' or 'linear', got {space!r}")


def pearson(xs: Sequence[float], ys: Sequence[float]) -> float:
    """r = sum (x - mx)(y - my) / sqrt(sum (x - mx)^2 sum (y - my)^2); NaN for n < 3 or a constant side."""
    if len(xs) != len(ys):
        raise ValueError(f"pearson: {len(xs)} x values vs {len(ys)} y values")
    if len(xs) < 3:
        return math.nan
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    sxy = sum((x - mx) * (y - my) for x, y in zip(xs, ys))
    sxx, syy = sum((x - mx) ** 2 for x in xs), sum((y - my) ** 2 for y in ys)
    return sxy / math.sqrt(sxx * syy) if sxx > 0 and syy > 0 else math.nan


def accuracy_on_line(runs: Sequence[Mapping[str, float]], id_set: str, ood_sets: Sequence[str],
                     space: str = "probit") -> list[dict]:
    """Per OOD set, over the runs that have both numbers: {"dataset", "r" (Pearson in ``space``), "slope"
    (least squares of transformed OOD on transformed ID), "n", "space"}. runs: {set name: accuracy} each."""
    out = []
    for name in ood_sets:
        pairs = [(transform(r[id_set], space), transform(r[name], space)) for r in runs
                 if r.get(id_set) is not None and r.get(name) is not None]
        xs, ys = [p[0] for p in pairs], [p[1] for p in pairs]
        r = pearson(xs, ys)
        slope = math.nan
        if len(xs) >= 2 and max(xs) > min(xs):
            mx, my = statistics.fmean(xs), statistics.fmean(ys)
            slope = sum((x - mx) * (y - my) for x, y in pairs) / sum((x - mx) ** 2 for x in xs)
        out.append({"dataset": name, "r": r, "slope": slope, "n": len(pairs), "space": space})
    return out


def effective_robustness_table(points: Sequence[Mapping], rows: Iterable[Mapping],
                               extrapolate: bool = False) -> list[dict]:
    """Per run point {"label", "id", "ood", ...}: the point plus "frontier_ood", "effective_robustness",
    "position" and "sign" ("+" above the frontier, "-" below, "0" on it to 1e-4, "n/a" where undefined)."""
    curve = [dict(r) for r in rows]
    out = []
    for p in points:
        er = effective_robustness(curve, float(p["id"]), float(p["ood"]), extrapolate)
        e = er["effective_robustness"]
        sign = "n/a" if math.isnan(e) else ("0" if abs(e) < 1e-4 else ("+" if e > 0 else "-"))
        out.append({**p, **er, "sign": sign})
    return out


def seed_means(table: Sequence[Mapping], key: str = "label") -> list[dict]:
    """Group ``effective_robustness_table`` rows by ``key`` (a method over seeds): per group {key, "n",
    "id"/"ood"/"effective_robustness": seed_stats(...)} in first-seen order (error bars of the ID-OOD plane)."""
    groups: dict = {}
    for r in table:
        groups.setdefault(r[key], []).append(r)
    return [{key: k, "n": len(g), **{m: seed_stats(r[m] for r in g) for m in ("id", "ood", "effective_robustness")}}
            for k, g in groups.items()]
