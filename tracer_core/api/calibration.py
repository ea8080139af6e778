"""Calibration page: reliability bins per run and step, the calibration table, a metric over training; and
which runs the analysis pages can show (``analysis_runs``)."""
from __future__ import annotations

from tracer_core.lazy import lazy

from pathlib import Path
from typing import Sequence

np = lazy("numpy")
pd = lazy("pandas")

from .common import id_set, runs_frame, with_runs
from .live import eval_frame

CAL_METRICS = {"accuracy": "accuracy", "ece": "ECE", "ece_batch": "per-batch ECE (reference protocol)",
               "mce": "MCE", "nll": "NLL (nats)", "brier": "Brier"}


def analysis_runs(services, need: str) -> pd.DataFrame:
    """Runs (label, strategy, status, ...) that have ``need``: "evaluations", "similarities" or "checkpoint"."""
    runs = runs_frame(services)
    if runs.empty:
        return runs
    ids = runs["run_id"].tolist()
    if need == "evaluations":
        have = set(services.store.evaluations(ids, metrics=["ece"])["run_id"])
    elif need == "similarities":
        have = set(services.store.similarities(ids)["run_id"])
    elif need == "checkpoint":
        art = services.store.artifacts(ids)
        art = art[(art["kind"] == "checkpoint") & art["path"].map(lambda p: Path(p).is_file())]
        have = set(art["run_id"])
    else:
        raise ValueError(f"need must be evaluations, similarities or checkpoint, got {need!r}")
    return runs[runs["run_id"].isin(have)].reset_index(drop=True)


def eval_sets_of(services, run_ids: Sequence[str]) -> list[str]:
    """Evaluation sets of the runs, their in-distribution (train) sets first."""
    if not run_ids:
        return []
    ev = services.store.evaluations(list(run_ids), metrics=["ece"])
    ids = {id_set(c) for c in runs_frame(services, run_ids)["config"]}
    return sorted(ev["dataset"].unique(), key=lambda d: (d not in ids, d))



def calibration_steps(services, run_ids: Sequence[str], dataset: str | None = None) -> list[int]:
    """Evaluation steps (union over the runs) with reliability bins."""
    if not run_ids:
        return []
    ev = services.store.evaluations(list(run_ids), datasets=[dataset] if dataset else None, metrics=["ece"])
    return sorted(int(s) for s in ev["step"].unique())


def _steps_at(services, run_ids: Sequence[str], step: int | None, dataset: str | None = None) -> dict[str, int]:
    """run -> the evaluation step shown for slider position ``step``: the latest one <= step (None: last)."""
    ev = services.store.evaluations(list(run_ids), datasets=[dataset] if dataset else None, metrics=["ece"])
    out = {}
    for rid, g in ev.groupby("run_id"):
        s = g["step"] if step is None else g.loc[g["step"] <= step, "step"]
        out[rid] = int((s if len(s) else g["step"]).max())
    return out


def fold_top_bin(bins: pd.DataFrame) -> pd.DataFrame:
    """Merge the confidence == 1.0 bin (lo = hi = 1.0, the (n_bins+1)-th) into the last regular bin
    [lo, 1.0]: counts add, mean confidence and accuracy are count-weighted. ``bins``: one model's bins."""
    top = bins[(bins["lo"] >= 1.0) & (bins["hi"] >= 1.0)]
    if top.empty or len(bins) < 2:
        return bins
    rest = bins.drop(index=top.index).copy()
    last = rest["bin"].idxmax()
    n0, n1 = rest.at[last, "count"], top["count"].sum()
    if n1 > 0:
        for col in ("mean_confidence", "accuracy"):
            v0 = rest.at[last, col] if n0 > 0 else 0.0
            v1 = (top[col].fillna(0) * top["count"]).sum() / n1
            rest.at[last, col] = (v0 * n0 + v1 * n1) / (n0 + n1)
        rest.at[last, "count"] = n0 + n1
    return rest


def reliability_frame(services, run_ids: Sequence[str], dataset: str, step: int | None = None,
                      fold_top: bool = True) -> pd.DataFrame:
    """Reliability bins of one eval set: per run its latest evaluation at or before ``step`` (None: the last).

    Columns: run_id, label, strategy, teacher, step, dataset, model (student/teacher), bin, lo, hi, count,
    share (of the model's images), mean_confidence, accuracy, gap (confidence - accuracy)."""
    cols = ["run_id", "label", "strategy", "teacher", "step", "dataset", "model", "bin", "lo", "hi", "count",
            "share", "mean_confidence", "accuracy", "gap"]
    if not run_ids:
        return pd.DataFrame(columns=cols)
    parts = []
    by_step: dict[int, list[str]] = {}
    for rid, s in _steps_at(services, run_ids, step, dataset).items():
        by_step.setdefault(s, []).append(rid)
    for s, rids in by_step.items():
        parts.append(services.store.reliability(rids, s, [dataset]))
    rel = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()
    if rel.empty:
        return pd.DataFrame(columns=cols)
    if fold_top:
        rel = pd.concat([fold_top_bin(g) for _, g in rel.groupby(["run_id", "model"], sort=False)],
                        ignore_index=True)
    rel["share"] = rel["count"] / rel.groupby(["run_id", "model"])["count"].transform("sum").replace(0, np.nan)
    rel["gap"] = rel["mean_confidence"] - rel["accuracy"]
    order = {r: i for i, r in enumerate(run_ids)}           # panels in the order the runs were chosen
    rel = rel.assign(_o=rel["run_id"].map(order)).sort_values(["_o", "model", "bin"], kind="stable")
    return with_runs(rel, runs_frame(services, run_ids))[cols]


def calibration_table(services, run_ids: Sequence[str], step: int | None = None) -> pd.DataFrame:
    """One row per run, eval set and model (student; teacher where evaluated) at each run's latest evaluation
    at or before ``step``: accuracy, ECE, per-batch ECE (reference protocol), MCE, NLL, Brier."""
    cols = ["run", "eval set", "model", "step", *CAL_METRICS.values()]
    if not run_ids:
        return pd.DataFrame(columns=cols)
    ev = services.store.evaluations(list(run_ids))
    if ev.empty:
        return pd.DataFrame(columns=cols)
    at = _steps_at(services, run_ids, step)
    ev = ev[ev["step"] == ev["run_id"].map(at)].copy()
    teacher = ev["metric"].str.startswith("teacher_")
    ev["model"] = np.where(teacher, "teacher", "student")
    ev["metric"] = ev["metric"].str.removeprefix("teacher_")
    ev = ev[ev["metric"].isin(list(CAL_METRICS))]
    wide = ev.pivot_table(index=["run_id", "dataset", "model", "step"], columns="metric", values="value").reset_index()
    runs = runs_frame(services, run_ids)
    ids = {id_set(c) for c in runs["config"]}
    wide = wide.merge(runs[["run_id", "label"]], on="run_id", how="left")
    wide["_order"] = [(list(run_ids).index(r), d not in ids, d, m) for r, d, m in
                      zip(wide["run_id"], wide["dataset"], wide["model"])]
    wide = wide.sort_values("_order").rename(columns={"label": "run", "dataset": "eval set", **CAL_METRICS})
    return wide.reindex(columns=cols).reset_index(drop=True)


def calibration_trend(services, run_ids: Sequence[str], dataset: str,
                      metric: str = "ece") -> tuple[pd.DataFrame, list[str]]:
    """One student metric of one eval set over training, and the ID set names (as ``api.eval_frame``)."""
    ev, id_sets = eval_frame(services, run_ids, metric)
    return ev[ev["dataset"] == dataset].reset_index(drop=True), id_sets
