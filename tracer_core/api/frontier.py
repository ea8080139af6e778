"""ID–OOD page, report and Home: runs on the ID–OOD plane, effective robustness vs a frontier, accuracy on the
line, and the demo's one-sentence outcome (all from stored evaluations; the WiSE-FT curve itself is computed
by :func:`tracer_core.api.robustness.wise_curve_frame` and handed in).

Accuracies are fractions here; pages and tables show points (x100). A run's ID set is its train set with a
split suffix removed ("mnist:fit" -> "mnist"); its OOD sets are its other eval sets except validation splits
(":val"), which are ID hold-outs, not shifts. Per run the numbers are its **last** evaluation.
"""
from __future__ import annotations

from tracer_core.lazy import lazy

import math
from typing import Mapping, Sequence

pd = lazy("pandas")

from tracer_core.metrics.outcome import outcome_sentence
from tracer_core.metrics.robustness_frontier import (accuracy_on_line, effective_robustness,
                                                     effective_robustness_table, seed_stats)

from .common import METHOD_LABELS, Services, id_set, run_config, runs_frame

OOD_MEAN = "mean"
_WISE: dict[tuple, pd.DataFrame] = {}      # (run_id, ood sets) -> WiSE summary, shared by every page (Home)
_WISE_MAX = 16


def _base(name: str) -> str:
    return str(name).split(":", 1)[0]


def _accuracies(services: Services, run_ids: Sequence[str], step0: bool = False) -> pd.DataFrame:
    """run_id x dataset accuracy at each run's last (or, with ``step0``, its step-0) evaluation."""
    ev = services.store.evaluations(list(run_ids), metrics=["accuracy"])
    if ev.empty:
        return pd.DataFrame()
    pick = ev["step"] == 0 if step0 else ev["step"] == ev.groupby("run_id")["step"].transform("max")
    return ev[pick].pivot_table(index="run_id", columns="dataset", values="value", aggfunc="mean")


def plane_points(services: Services, run_ids: Sequence[str] | None = None, ood: str = OOD_MEAN) -> pd.DataFrame:
    """One row per run with an ID and an OOD number: run_id, label, strategy, method, seed, group, group_label,
    id_set, id, ood (``ood`` = one set's accuracy, or the mean over the run's OOD sets) and one column per set."""
    runs = runs_frame(services, run_ids)
    cols = ["run_id", "label", "strategy", "method", "seed", "group", "group_label", "id_set", "id", "ood"]
    if runs.empty:
        return pd.DataFrame(columns=cols)
    acc = _accuracies(services, runs["run_id"].tolist())
    groups = services.store.seed_groups(runs["run_id"].tolist())
    gid = {r: (g, lab) for g, lab, ids in zip(groups["group"], groups["label"], groups["run_ids"]) for r in ids}
    rows = []
    for r in runs.itertuples():
        if acc.empty or r.run_id not in acc.index:
            continue
        a = acc.loc[r.run_id].dropna()
        idn = _base(id_set(r.config))
        oods = [d for d in a.index if d != idn and not d.endswith(":val") and d != id_set(r.config)]
        if idn not in a.index or not oods or (ood != OOD_MEAN and ood not in a.index):
            continue
        y = float(a[oods].mean()) if ood == OOD_MEAN else float(a[ood])
        g, glab = gid.get(r.run_id, (r.run_id, r.label))
        rows.append({"run_id": r.run_id, "label": r.label, "strategy": r.strategy, "method": r.method,
                     "seed": r.seed, "group": g, "group_label": f"{glab} — {r.strategy}", "id_set": idn,
                     "id": float(a[idn]), "ood": y, **{d: float(v) for d, v in a.items()}})
    return pd.DataFrame(rows).reindex(columns=[*cols, *sorted({k for x in rows for k in x} - set(cols))])


def ood_choices(points: pd.DataFrame) -> list[str]:
    """OOD sets that appear in the points (for the "one OOD set" picker)."""
    fixed = {"run_id", "label", "strategy", "method", "seed", "group", "group_label", "id_set", "id", "ood"}
    ids = set(points["id_set"]) if not points.empty else set()
    return [c for c in points.columns if c not in fixed and c not in ids and not str(c).endswith(":val")]


def zero_shot_point(services: Services, id_name: str, ood: str = OOD_MEAN,
                    ood_sets: Sequence[str] = ()) -> dict | None:
    """The zero-shot model's (id, ood): a finished "zeroshot" run's evaluation, else any run's step-0
    evaluation (the pretrained model before its first step; FT's head starts as the zero-shot head)."""
    runs = runs_frame(services)
    if runs.empty:
        return None
    zs = runs[(runs["method"] == "zeroshot") & (runs["status"] == "done")]
    for ids, step0, source in ((zs["run_id"].tolist(), False, "zero-shot run"),
                               (runs["run_id"].tolist(), True, "step-0 evaluation")):
        acc = _accuracies(services, ids, step0) if ids else pd.DataFrame()
        if acc.empty or id_name not in acc.columns:
            continue
        a = acc.mean()
        sets = [ood] if ood != OOD_MEAN else [s for s in (ood_sets or a.index) if s in a.index and s != id_name
                                                 and not str(s).endswith(":val")]
        if sets and all(s in a.index and not math.isnan(a[s]) for s in sets) and not math.isnan(a[id_name]):
            return {"label": f"zero-shot ({source})", "id": float(a[id_name]), "ood": float(a[sets].mean())}
    return None


def line_frontier(zs: Mapping, ft: Mapping) -> pd.DataFrame:
    """The zero-shot–FT straight line: WiSE-FT's two endpoints (α = 0, 1) without evaluating any α between."""
    return pd.DataFrame([{"alpha": 0.0, "id_accuracy": zs["id"], "ood_accuracy": zs["ood"]},
                         {"alpha": 1.0, "id_accuracy": ft["id"], "ood_accuracy": ft["ood"]}])


def er_tables(points: pd.DataFrame, curve: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(per run, per seed group) effective robustness against ``curve`` (alpha, id_accuracy, ood_accuracy).

    Per run: label, strategy, id, ood, frontier_ood, effective_robustness, sign, position, why, er_extended
    (ER against the end segment extended where the run lies outside the ID range: an estimate).
    Per group: group_label, n, id/ood/effective_robustness mean and std over seeds, sign of the mean ER."""
    if points.empty or curve is None or curve.empty:
        return pd.DataFrame(), pd.DataFrame()
    rows = curve[["alpha", "id_accuracy", "ood_accuracy"]].to_dict("records")
    pts = points[["run_id", "label", "strategy", "group", "group_label", "id", "ood"]].to_dict("records")
    per = pd.DataFrame(effective_robustness_table(pts, rows))
    # Outside the frontier's ID range ER is undefined; the end segment extended gives an estimate (the
    # tuning bench's "ER, end segment extended" column), shown beside ER, never in place of it (NaN inside).
    per["er_extended"] = [math.nan if s != "n/a" else effective_robustness(rows, i, o, True)["effective_robustness"]
                          for s, i, o in zip(per["sign"], per["id"], per["ood"])]
    lo, hi = curve["id_accuracy"].min(), curve["id_accuracy"].max()
    per["why"] = [("" if s != "n/a" else f"{pos} its ID range {100 * lo:.1f}–{100 * hi:.1f} %")
                  for s, pos in zip(per["sign"], per["position"])]
    grp = []
    for g, x in per.groupby("group", sort=False):
        st = {m: seed_stats(x[m]) for m in ("id", "ood", "effective_robustness")}
        e = st["effective_robustness"]["mean"]
        grp.append({"group_label": x["group_label"].iloc[0], "n": len(x),
                    **{f"{m} {k}": st[m][k] for m in st for k in ("mean", "std")},
                    "runs with ER": int(x["effective_robustness"].notna().sum()),
                    "sign": "n/a" if math.isnan(e) else ("0" if abs(e) < 1e-4 else ("+" if e > 0 else "-"))})
    return per, pd.DataFrame(grp)


def endpoint_eval_samples(config_json: str | None) -> int:
    """Images per set a run's own evaluations used (data.max_eval_samples of its stored config; 1000 when
    unset). A WiSE-FT curve on that many images re-evaluates the same prefix, so its α = 1 point is the
    endpoint's stored point (on another size the endpoint would sit off its own frontier)."""
    data = run_config(config_json).get("data", {})
    return int((data.get("max_eval_samples") if isinstance(data, dict) else None) or 1000)


def er_display(per: pd.DataFrame, minus_sign: bool = False) -> pd.DataFrame:
    """The per-run ER table as the page and the report show it (points); ``minus_sign``: "−" for "-"."""
    return pd.DataFrame({
        "run": per["label"], "strategy": per["strategy"], "ID %": 100 * per["id"], "OOD %": 100 * per["ood"],
        "frontier OOD %": 100 * per["frontier_ood"], "ER (points)": 100 * per["effective_robustness"],
        "sign": per["sign"].replace({"-": "−"}) if minus_sign else per["sign"], "why n/a": per["why"],
        "ER extended": 100 * per["er_extended"]})


def line_table(services: Services, space: str = "probit") -> pd.DataFrame:
    """Accuracy on the line over ALL runs in the store: per OOD set, Pearson r of its transformed accuracy
    with the transformed ID accuracy (same ID set only), slope and n."""
    pts = plane_points(services)
    out = []
    for idn, g in pts.groupby("id_set") if not pts.empty else []:
        sets = [s for s in ood_choices(g) if g[s].notna().any()]
        recs = [{k: v for k, v in r.items() if isinstance(v, float) and not math.isnan(v)}
                for r in g[[idn, *sets]].rename(columns={idn: "__id"}).to_dict("records")]
        for row in accuracy_on_line(recs, "__id", sets, space):
            out.append({"ID set": idn, **row})
    return pd.DataFrame(out, columns=["ID set", "dataset", "r", "slope", "n", "space"])


def remember_wise(run_id: str, ood_sets: Sequence[str], summary: pd.DataFrame) -> pd.DataFrame:
    """Keep a computed WiSE summary for other pages (Home's outcome sentence) in this server process."""
    if len(_WISE) >= _WISE_MAX:
        _WISE.pop(next(iter(_WISE)))
    _WISE[(run_id, tuple(ood_sets))] = summary
    return summary


def known_wise(run_id: str, ood_sets: Sequence[str] | None = None) -> pd.DataFrame | None:
    """A remembered WiSE summary of ``run_id`` (for exactly ``ood_sets`` when given), else None."""
    for (rid, sets), s in reversed(list(_WISE.items())):
        if rid == run_id and (ood_sets is None or tuple(ood_sets) == sets):
            return s
    return None
