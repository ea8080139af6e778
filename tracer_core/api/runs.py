"""Runs page: the queue, the runs table with key results, rename/tag/delete, config diff, export."""
from __future__ import annotations

from tracer_core.lazy import lazy

import io
import tempfile
import zipfile
from typing import Sequence

pd = lazy("pandas")

from tracer_core.store import schema

from .common import Services, id_set, run_labels, runs_frame

def jobs_table(services: Services) -> pd.DataFrame:
    """Queued and running runs of this data folder with progress and ETA (seconds)."""
    jobs = services.runner.jobs()
    rows = [{"run_id": j.run_id, "status": j.status, "steps_done": j.steps_done, "total": j.total,
             "progress": j.progress,
             "eta_s": j.eta_s, "queue_position": j.queue_position, "error": j.error} for j in jobs]
    df = pd.DataFrame(rows, columns=["run_id", "status", "steps_done", "total", "progress", "eta_s", "queue_position",
                                     "error"])
    return df[df["status"].isin(schema.ACTIVE_STATUSES)].reset_index(drop=True)


def cancel_run(services: Services, run_id: str) -> bool:
    return services.runner.cancel(run_id)


def _picked_evals(services: Services, run_ids: Sequence[str], pick: str = "last") -> pd.DataFrame:
    """One value per run, dataset and metric: the latest evaluation, or the best one over training."""
    ev = services.store.evaluations(list(run_ids))
    if ev.empty or pick == "last":
        return ev if ev.empty else ev[ev["step"] == ev.groupby(["run_id", "dataset", "metric"])["step"].transform("max")]
    lower = ev["metric"].map(lambda m: schema.eval_metric_meta(m).higher_is_better is False)
    score = ev["value"].where(~lower, -ev["value"])
    return ev.loc[score.groupby([ev["run_id"], ev["dataset"], ev["metric"]]).idxmax().dropna()]


def _key_results(services: Services, runs: pd.DataFrame, pick: str = "last") -> pd.DataFrame:
    """Per run: ID/OOD accuracy and ID ECE (last or best evaluation), normalised KL AUC, half-life, slope."""
    ids = runs["run_id"].tolist()
    ev = _picked_evals(services, ids, pick)
    id_sets = {r: id_set(c) for r, c in zip(runs["run_id"], runs["config"])}
    rows = []
    for rid in ids:
        e = ev[ev["run_id"] == rid] if not ev.empty else pd.DataFrame(columns=["dataset", "metric", "value"])
        is_id = e["dataset"] == id_sets.get(rid)
        acc = e["metric"] == "accuracy"
        rows.append({"run_id": rid, "ID accuracy": e.loc[acc & is_id, "value"].mean(),
                     "OOD accuracy (mean)": e.loc[acc & ~is_id, "value"].mean(),
                     "ID ECE": e.loc[(e["metric"] == "ece") & is_id, "value"].mean()})
    out = pd.DataFrame(rows, columns=["run_id", "ID accuracy", "OOD accuracy (mean)", "ID ECE"])
    sm = services.store.summaries(ids, ["teacher_student_kl"], ["combined"])
    sm = sm.rename(columns={"auc_normalized": "KL AUC (normalised)", "half_life_step": "KL half-life (step)",
                            "early_slope": "KL early slope (per step)"})
    keep = ["run_id", "KL AUC (normalised)", "KL half-life (step)", "KL early slope (per step)"]
    out = out.merge(sm[keep] if not sm.empty else pd.DataFrame(columns=keep), on="run_id", how="left")
    return out.astype({c: "float64" for c in out.columns if c != "run_id"})


RESULT_DIRECTIONS = {"ID accuracy": True, "OOD accuracy (mean)": True, "ID ECE": False,
                     "KL AUC (normalised)": None, "KL half-life (step)": None, "KL early slope (per step)": None}


def runs_table(services: Services, *, run_ids: Sequence[str] | None = None, status=None, method=None,
               teacher=None, tags=None, name_contains: str | None = None, with_results: bool = True,
               pick: str = "last") -> pd.DataFrame:
    """The runs with status, strategy, seed, tags, progress and (optionally) key results; newest first.
    ``pick``: "last" or "best" evaluation for the accuracy/ECE columns."""
    runs = runs_frame(services, run_ids, status=status or None, method=method or None, teacher=teacher or None,
                 tags=tags or None, name_contains=name_contains or None)
    cols = ["run_id", "label", "name", "status", "strategy", "method", "teacher", "seed", "tags", "step",
            "steps_done", "total", "progress", "eta_s", "created", "error", "config", "device"]
    runs = runs.reindex(columns=cols)
    if with_results and not runs.empty:
        runs = runs.merge(_key_results(services, runs, pick), on="run_id", how="left")
    return runs


def summary_table(services: Services, run_ids: Sequence[str], pick: str = "last"
                  ) -> tuple[pd.DataFrame, dict[str, bool | None]]:
    """(table indexed by run label, direction per column: True higher is better, False lower, None neither).

    KL AUC, half-life and slope describe the teacher's persistence; which is "better" is the question being
    studied, so only accuracy (higher) and ECE (lower) are highlighted as best."""
    runs = runs_frame(services, run_ids)
    if runs.empty:
        return pd.DataFrame(), RESULT_DIRECTIONS
    res = _key_results(services, runs, pick).merge(runs[["run_id", "label", "strategy", "status"]], on="run_id")
    res = res.set_index("label")[["strategy", "status", *RESULT_DIRECTIONS]]
    return res, RESULT_DIRECTIONS


def rename_run(services: Services, run_id: str, name: str) -> None:
    services.store.rename(run_id, name)


def set_tags(services: Services, run_id: str, tags: str | Sequence[str]) -> None:
    items = tags.split(",") if isinstance(tags, str) else tags
    services.store.set_tags(run_id, [t.strip() for t in items if t.strip()])


def delete_run(services: Services, run_id: str) -> None:
    services.store.delete(run_id)


def config_diff(services: Services, run_ids: Sequence[str]) -> pd.DataFrame:
    """Diff-only config view: rows are dotted keys that differ, columns are run labels."""
    diff = services.store.config_diff(list(run_ids))
    labels = run_labels(services.store.list_runs(run_ids=list(run_ids)))
    return diff.rename(columns=lambda r: labels.get(r, r)).astype(str)


def export_zip(services: Services, run_ids: Sequence[str], fmt: str = "csv") -> bytes:
    """runs/series/evaluations/... of the selected runs as one zip of CSV or Parquet files."""
    with tempfile.TemporaryDirectory() as tmp:
        files = services.store.export(list(run_ids), fmt, tmp)
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
            for f in files:
                z.write(f, arcname=f.name)
    return buf.getvalue()
