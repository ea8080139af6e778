"""Live dynamics page: the series present, one query for all panels, seed bands, evaluations over training."""
from __future__ import annotations

from tracer_core.lazy import lazy

from typing import Sequence

pd = lazy("pandas")

from .common import Services, id_set, runs_frame, strategy, with_runs

# the per-step teacher statistics drawn as live panels (plus a loss term and the learning rate)
TEACHER_PANELS = ("teacher_student_kl", "teacher_avg_entropy", "teacher_avg_confidence",
                  "teacher_student_agreement", "teacher_gt_prob", "teacher_student_top5_alignment")


def series_options(services: Services, run_ids: Sequence[str]) -> pd.DataFrame:
    """(name, context, label, unit, group, n_runs, n_points) present for the runs."""
    return services.store.series_catalog(list(run_ids)) if run_ids else pd.DataFrame(
        columns=["name", "context", "n_runs", "n_points", "label", "unit", "group"])


def live_frames(services: Services, run_ids: Sequence[str], panels: Sequence[tuple[str, str]],
                max_points: int = 600) -> dict[tuple[str, str], pd.DataFrame]:
    """One query for all panels: ``(name, context) -> frame`` with run label, strategy and teacher."""
    if not run_ids:
        return {p: pd.DataFrame(columns=["run_id", "step", "value", "label", "strategy", "teacher"]) for p in panels}
    names = sorted({n for n, _ in panels})
    contexts = sorted({c for _, c in panels})
    df = services.store.series(list(run_ids), names, contexts, max_points=max_points)
    df = with_runs(df, runs_frame(services, run_ids))
    return {(n, c): df[(df["name"] == n) & (df["context"] == c)].reset_index(drop=True) for n, c in panels}


def band_frame(services: Services, run_ids: Sequence[str], name: str, context: str) -> pd.DataFrame:
    """Seed groups among the runs (configs equal except the seed) as mean/std/min/max per step."""
    groups = services.store.seed_groups(list(run_ids))
    if groups.empty:
        return pd.DataFrame()
    band = services.store.seed_band(dict(zip(groups["group"], groups["run_ids"])), name, context, max_points=600)
    groups = groups.assign(strategy=[strategy(m, t) for m, t in zip(groups["method"], groups["teacher"])])
    return band.merge(groups[["group", "label", "strategy", "teacher"]], on="group", how="left")


def eval_frame(services: Services, run_ids: Sequence[str], metric: str = "accuracy") -> tuple[pd.DataFrame, list[str]]:
    """Evaluations of one metric over training, and the in-distribution set names (the runs' train sets)."""
    runs = runs_frame(services, run_ids)
    ev = services.store.evaluations(list(run_ids), metrics=[metric]) if run_ids else pd.DataFrame()
    id_sets = sorted({id_set(c) for c in runs.get("config", [])})
    if ev.empty:
        return pd.DataFrame(columns=["run_id", "step", "dataset", "value", "label", "strategy", "teacher"]), id_sets
    return with_runs(ev, runs), id_sets
