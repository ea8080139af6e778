"""Runs page: the queue, the runs table with key results, rename/tag/delete, config diff, export."""
from __future__ import annotations

from tracer_core.lazy import lazy

import io
import tempfile
import zipfile
from typing import Sequence

pd = lazy("pandas")

from tracer_core.store import schema

from .common import Services, id_set, run_config, run_labels, runs_frame, strategy

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


PAGE_SORTS = {"created": "created", "name": "name", "status": "status", "method": "method", "teacher": "teacher",
              "seed": "seed", "steps_done": "steps done", "images_per_s": "images/s", "skipped_images": "skipped images",
              "run_id": "run id"}
GROUP_KEYS = ("method", "teacher", "preset", "seed", "status", "device")
THROUGHPUT = {"images_per_s": "images/s (train step)", "skipped_images": "skipped images"}


def runs_facets(services: Services) -> dict[str, list]:
    """Filter choices over every run (one store query, no labels or results): status, method, teacher, tags,
    eval sets (from the configs), the incompatible folders (run id -> reason) and the number of runs."""
    runs = services.store.list_runs()
    sets = set()
    for c in runs.get("config", []):
        data = run_config(c).get("data", {})
        if isinstance(data, dict):
            sets.update(str(d) for d in (data.get("eval_sets") or []) if isinstance(d, str))
            sets.update([str(data["train_set"])] if isinstance(data.get("train_set"), str) else [])
    col = lambda k: sorted(runs[k].dropna().astype(str).unique()) if k in runs else []  # noqa: E731
    bad = runs[runs["status"] == schema.INCOMPATIBLE] if "status" in runs else runs.iloc[:0]
    return {"status": col("status"), "method": col("method"), "teacher": col("teacher"), "eval_sets": sorted(sets),
            "incompatible": dict(zip(bad.get("run_id", []), bad.get("error", []))),
            "tags": sorted({t for ts in runs.get("tags", []) for t in (list(ts) if ts is not None else [])}),
            "n_runs": len(runs)}


def runs_page(services: Services, *, page: int = 1, page_size: int = 50, sort_by: str = "created",
              descending: bool = True, pick: str = "last", with_results: bool = True, status=None, method=None,
              teacher=None, tags=None, name_contains: str | None = None, config=None) -> tuple[pd.DataFrame, int]:
    """``(one page of the Runs table, number of runs matching the filters)``, filtered, sorted and paged in the
    store (store.runs_page), so the cost does not grow with the number of runs; key results, images/s of
    the training step and skipped (unreadable) images for the page's runs only. ``page`` counts from 1."""
    filters = {k: v or None for k, v in dict(status=status, method=method, teacher=teacher, tags=tags,
                                             name_contains=name_contains).items()}
    df, total = services.store.runs_page(sort_by=sort_by, descending=descending, offset=(max(int(page), 1) - 1)
                                         * int(page_size), limit=int(page_size), config=config or None, **filters)
    if not df.empty:
        df["label"] = run_labels(df).to_numpy()
        df["strategy"] = [strategy(m, t) for m, t in zip(df["method"], df["teacher"])]
    cols = ["run_id", "label", "name", "status", "strategy", "method", "teacher", "seed", "tags", "step",
            "steps_done", "total", "progress", "eta_s", "created", "error", "config", "device", *THROUGHPUT]
    df = df.reindex(columns=cols).astype({"images_per_s": "float64"})
    if with_results and not df.empty:
        df = df.merge(_key_results(services, df, pick), on="run_id", how="left")
    return df.reset_index(drop=True), int(total)


def page_caption(page_no: int, page_size: int, shown: int, total: int) -> str:
    """"Runs 26–50 of 123 (page 2 of 5; ...)" for the Runs table."""
    first = (page_no - 1) * page_size + 1
    return (f"Runs {first}–{first + shown - 1} of {total} (page {page_no} of {max(1, -(-total // page_size))}; "
            "filtered, sorted and paged in the store)")


def group_metrics(eval_sets) -> dict[str, tuple[str, tuple[str, str]]]:
    """Choices for the group rows' statistic: label -> ("eval" | "series", (dataset, metric) | (name, context))."""
    out = {f"accuracy on {d}": ("eval", (d, "accuracy")) for d in eval_sets}
    out.update({f"ECE on {d}": ("eval", (d, "ece")) for d in eval_sets})
    out.update({"images/s (train step, last logged)": ("series", ("images_per_s", "")),
                "final loss (total)": ("series", ("loss", "total")),
                "skipped images (train)": ("series", ("skipped_images", "train"))})
    return out


def runs_groups(services: Services, by, metric: tuple[str, tuple[str, str]], *, config_keys: str = "",
                status=None, method=None, teacher=None, tags=None, name_contains: str | None = None,
                config=None) -> pd.DataFrame:
    """Group rows over *all* matching runs (store.runs_groups, in SQL): the group keys, runs, n (runs with a
    value), mean, std (sample), min, max of each run's last value of ``metric`` (from :func:`group_metrics`).
    ``by``: columns of ``GROUP_KEYS`` or ``config.<dotted key>``; ``config_keys``: more dotted keys, comma-separated
    (a malformed key raises ValueError naming it). No group column: one row over all matching runs."""
    by = [*by, *(f"config.{k.strip()}" for k in config_keys.split(",") if k.strip())]
    kind, key = metric
    filters = {k: v or None for k, v in dict(status=status, method=method, teacher=teacher, tags=tags,
                                             name_contains=name_contains).items()}
    arg = {"eval_metric": tuple(key)} if kind == "eval" else {"series_metric": tuple(key)}
    df = services.store.runs_groups(by=list(by), config=config or None, **arg, **filters)
    return df.drop(columns=["run_ids"], errors="ignore").rename(columns={"n_runs": "runs"})


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
