"""The one surface the dashboard pages use: services, launch, live dynamics, runs, kernel explorer.

Returns pandas DataFrames, plotly figures (via :mod:`tracer_core.charts`) and small dataclasses. Imports no
torch, open_clip or streamlit at module level (``tests/test_architecture.py`` checks it); the two functions that
need the dataset registry import it lazily. Streamlit holds :class:`Services` with ``st.cache_resource`` (one
job runner and one store per server process, shared by every browser tab).
"""
from __future__ import annotations

import io
import itertools
import json
import os
import secrets
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

from tracer_core import charts
from tracer_core.config import (METHODS, TEACHER_KINDS, ConfigError, RunConfig, list_presets, load_preset,
                                preset_description)
from tracer_core.jobs.runner import JobRunner
from tracer_core.store import schema
from tracer_core.store.runstore import RunStore, StoreError
from tracer_core.teachers.schedules import snapshot_weights, teacher_profile, update_weights

DEMO_PRESETS = ("tracer_ema", "tracer", "ft")        # teacher runs first: their KL gap is the point of the demo
# Short runs (EMA collapse shows within tens of steps) with live ID/OOD accuracy every 25 steps on 250 images per
# set. No step-0 evaluation: it would delay the first live point by seconds (target: < 10 s from the click).
DEMO_OVERRIDES = ("train.steps=100", "train.eval_every=25", "train.eval_at_start=false", "data.max_eval_samples=250")
DEMO_ENV = "TRACER_DEMO_OVERRIDES"                  # JSON list of extra overrides (tests: tiny synthetic runs)
MAX_SWEEP = 64
# the per-step teacher statistics drawn as live panels (plus a loss term and the learning rate)
TEACHER_PANELS = ("teacher_student_kl", "teacher_avg_entropy", "teacher_avg_confidence",
                  "teacher_student_agreement", "teacher_gt_prob", "teacher_student_top5_alignment")
FORM_KEYS = {"method": "method", "teacher": "teacher.kind", "beta": "teacher.beta",
             "m_start": "teacher.momentum_start", "m_end": "teacher.momentum_end",
             "m_warmup": "teacher.momentum_warmup", "update_every": "teacher.update_every",
             "lambda_sd": "loss.lambda_sd", "alpha_crd": "loss.alpha_crd", "alpha_fd": "loss.alpha_fd",
             "alpha_icl": "loss.alpha_icl", "alpha_cross_kd": "loss.alpha_cross_kd", "lr": "optim.lr",
             "steps": "train.steps", "batch_size": "data.batch_size", "seed": "train.seed",
             "model": "model.name", "pretrained": "model.pretrained", "train_set": "data.train_set",
             "eval_sets": "data.eval_sets", "name": "name"}


# -- services -------------------------------------------------------------------------------------------

@dataclass
class Services:
    store: RunStore
    runner: JobRunner

    def close(self) -> None:
        self.runner.shutdown()
        self.store.close()


def data_dir() -> Path:
    """``$TRACER_DATA_DIR``, else ``<repo>/data``."""
    return schema.resolve_data_dir()


def open_services(directory: str | os.PathLike | None = None) -> Services:
    """One RunStore (the DuckDB owner) and one JobRunner on the data folder. Concurrency from
    ``$TRACER_MAX_CONCURRENT`` (default 1: on 2 cores one run at a time gives the first points fastest)."""
    d = schema.resolve_data_dir(directory)
    runner = JobRunner(d, max_concurrent=int(os.environ.get("TRACER_MAX_CONCURRENT", "1")))
    return Services(store=RunStore(d, refresh_interval_s=0.5), runner=runner)


def new_client_token() -> str:
    """Per browser session: the job runner's idempotency token (a double click starts one run)."""
    return secrets.token_hex(8)


# -- presets and the launch form ------------------------------------------------------------------------

def presets() -> pd.DataFrame:
    return pd.DataFrame([{"preset": p, "description": preset_description(p)} for p in list_presets()])


def _get(d: dict, dotted: str) -> Any:
    for part in dotted.split("."):
        d = d[part]
    return d


def form_values(preset: str) -> dict[str, Any]:
    """The launch form's fields (keys of FORM_KEYS) filled from a preset."""
    cfg = load_preset(preset).to_dict()
    return {k: _get(cfg, dotted) for k, dotted in FORM_KEYS.items()}


def parse_list(text: str, kind: type = float, what: str = "values") -> list:
    """'1, 2 3' -> [1, 2, 3]; raises ConfigError naming the bad item."""
    out = []
    for item in str(text or "").replace(";", ",").replace(" ", ",").split(","):
        if item.strip():
            try:
                out.append(kind(item.strip()))
            except ValueError:
                raise ConfigError(f"{what}: {item.strip()!r} is not a valid {kind.__name__}") from None
    return out


def _fmt(v: Any) -> str:
    return json.dumps(list(v)) if isinstance(v, (list, tuple)) else (v if isinstance(v, str) else json.dumps(v))


def build_config(preset: str, values: dict[str, Any], extra: str = "", tags: str = "") -> RunConfig:
    """Preset + form values + free-form ``key=value`` lines; raises ConfigError with a readable message."""
    overrides = [f"{FORM_KEYS[k]}={_fmt(v)}" for k, v in values.items() if k in FORM_KEYS and v is not None]
    overrides += [ln.strip() for ln in str(extra or "").splitlines() if ln.strip() and not ln.strip().startswith("#")]
    cfg = load_preset(preset, overrides)
    if tags.strip():
        cfg = cfg.replace(tags=[t.strip() for t in tags.split(",") if t.strip()])
    _check_datasets(cfg)
    return cfg


def list_datasets() -> list[str]:
    """Registered dataset names, then those declared in the datasets file in force (data/declared.py)."""
    from tracer_core.data import list_datasets as _names
    from tracer_core.data.declared import declared_names
    return _names() + declared_names()


def _check_datasets(cfg: RunConfig) -> None:
    """Names (registered or declared), paths and class lists, before the run is queued (data/runsets.py)."""
    if not cfg.data.eval_sets:
        raise ConfigError("data.eval_sets: choose at least one evaluation set")
    try:
        from tracer_core.data.runsets import check_run_data
    except ImportError:          # registry unavailable: the worker reports the problem instead
        return
    try:
        check_run_data(cfg.data)
    except ValueError as e:
        raise ConfigError(str(e)) from None


def sweep_configs(base: RunConfig, seeds: Sequence[int] = (), betas: Sequence[float] = (),
                  lambdas: Sequence[float] = ()) -> list[RunConfig]:
    """One config per combination of the given seeds x beta values x lambda_SD values (empty = base's)."""
    seeds, betas, lambdas = list(seeds) or [None], list(betas) or [None], list(lambdas) or [None]
    n = len(seeds) * len(betas) * len(lambdas)
    if n > MAX_SWEEP:
        raise ConfigError(f"the sweep has {n} runs; at most {MAX_SWEEP} per launch")
    out = []
    for seed, beta, lam in itertools.product(seeds, betas, lambdas):
        changes, suffix = {}, []
        if seed is not None:
            changes["train.seed"], suffix = int(seed), suffix + [f"s{seed}"]
        if beta is not None:
            changes["teacher.beta"], suffix = float(beta), suffix + [f"b{beta:g}"]
        if lam is not None:
            changes["loss.lambda_sd"], suffix = float(lam), suffix + [f"sd{lam:g}"]
        if n > 1:
            changes["name"] = "-".join([base.name or base.preset or "run"] + suffix)
        out.append(base.replace(**changes) if changes else base)
    return out


def submit_runs(services: Services, configs: Sequence[RunConfig], client_token: str) -> list[str]:
    """Queue each config; resubmitting the same config with the same token within 10 s returns its run id."""
    return [services.runner.submit(c, client_token=client_token) for c in configs]


def demo_configs() -> list[RunConfig]:
    """The one-click comparison: EMA teacher, WMA teacher (TRACER) and plain FT on the embedded default.

    ``$TRACER_DEMO_OVERRIDES`` (a JSON list of ``key=value``) is applied last, e.g. for tests:
    ``'["train.steps=40","model.pretrained=none","data.train_set=synthetic","data.eval_sets=[\\"synthetic\\"]"]'``.
    """
    extra = os.environ.get(DEMO_ENV, "").strip()
    try:
        extra_list = json.loads(extra) if extra else []
    except json.JSONDecodeError as e:
        raise ConfigError(f"${DEMO_ENV} must be a JSON list of key=value strings ({e})") from None
    return [load_preset(p, [*DEMO_OVERRIDES, 'tags=["demo"]', *extra_list]) for p in DEMO_PRESETS]


def start_demo(services: Services, client_token: str) -> list[str]:
    return submit_runs(services, demo_configs(), client_token)


# -- jobs and runs --------------------------------------------------------------------------------------

def strategy(method: Any, teacher: Any) -> str:
    m = {"ft": "FT", "flyp": "FLYP", "tracer": "TRACER", "carot": "CaRot", "l2sp": "L2-SP", "lpft": "LP-FT",
         "lp": "LP", "ft2b": "FT2B", "grace": "GRACE", "zeroshot": "Zero-shot"}.get(str(method), str(method))
    t = str(teacher or "none")
    return m if t == "none" else f"{m} ({t.upper() if t in ('ema', 'wma') else t} teacher)"


def run_labels(runs: pd.DataFrame) -> pd.Series:
    """Short unique legend labels: the run name, plus the seed or a short id where names repeat."""
    if runs.empty:
        return pd.Series([], dtype=str)
    label = runs["name"].astype(str)
    dup = label.duplicated(keep=False)
    label = label.where(~dup, label + " s" + runs["seed"].astype("string").fillna("?"))
    dup = label.duplicated(keep=False)
    return label.where(~dup, label + " ·" + runs["run_id"].str[-4:]).set_axis(runs["run_id"])


def _runs(services: Services, run_ids: Sequence[str] | None = None, **filters: Any) -> pd.DataFrame:
    runs = services.store.list_runs(run_ids=list(run_ids) if run_ids is not None else None, **filters)
    if runs.empty:
        return runs.assign(label=pd.Series(dtype=str), strategy=pd.Series(dtype=str))
    runs["label"] = run_labels(runs).to_numpy()
    runs["strategy"] = [strategy(m, t) for m, t in zip(runs["method"], runs["teacher"])]
    return runs


def jobs_table(services: Services) -> pd.DataFrame:
    """Queued and running runs of this data folder with progress and ETA (seconds)."""
    jobs = services.runner.jobs()
    rows = [{"run_id": j.run_id, "status": j.status, "steps_done": getattr(j, "steps_done", j.step), "total": j.total,
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
    id_set = {r: json.loads(c or "{}").get("data", {}).get("train_set") for r, c in zip(runs["run_id"], runs["config"])}
    rows = []
    for rid in ids:
        e = ev[ev["run_id"] == rid] if not ev.empty else pd.DataFrame(columns=["dataset", "metric", "value"])
        is_id = e["dataset"] == id_set.get(rid)
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
    runs = _runs(services, run_ids, status=status or None, method=method or None, teacher=teacher or None,
                 tags=tags or None, name_contains=name_contains or None)
    cols = ["run_id", "label", "name", "status", "strategy", "method", "teacher", "seed", "tags", "step",
            "steps_done", "total", "progress", "eta_s", "created", "error", "config", "device"]
    if "steps_done" not in runs:     # older store versions
        runs["steps_done"] = runs.get("step", pd.Series(dtype="Int64"))
    runs = runs.reindex(columns=cols)
    if with_results and not runs.empty:
        runs = runs.merge(_key_results(services, runs, pick), on="run_id", how="left")
    return runs


def summary_table(services: Services, run_ids: Sequence[str], pick: str = "last"
                  ) -> tuple[pd.DataFrame, dict[str, bool | None]]:
    """(table indexed by run label, direction per column: True higher is better, False lower, None neither).

    KL AUC, half-life and slope describe the teacher's persistence; which is "better" is the question being
    studied, so only accuracy (higher) and ECE (lower) are highlighted as best."""
    runs = _runs(services, run_ids)
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


# -- live dynamics --------------------------------------------------------------------------------------

def series_options(services: Services, run_ids: Sequence[str]) -> pd.DataFrame:
    """(name, context, label, unit, group, n_runs, n_points) present for the runs."""
    return services.store.series_catalog(list(run_ids)) if run_ids else pd.DataFrame(
        columns=["name", "context", "n_runs", "n_points", "label", "unit", "group"])


def _with_runs(frame: pd.DataFrame, runs: pd.DataFrame) -> pd.DataFrame:
    info = runs[["run_id", "label", "strategy", "teacher"]]
    return frame.merge(info, on="run_id", how="left")


def live_frames(services: Services, run_ids: Sequence[str], panels: Sequence[tuple[str, str]],
                max_points: int = 600) -> dict[tuple[str, str], pd.DataFrame]:
    """One query for all panels: ``(name, context) -> frame`` with run label, strategy and teacher."""
    if not run_ids:
        return {p: pd.DataFrame(columns=["run_id", "step", "value", "label", "strategy", "teacher"]) for p in panels}
    names = sorted({n for n, _ in panels})
    contexts = sorted({c for _, c in panels})
    df = services.store.series(list(run_ids), names, contexts, max_points=max_points)
    df = _with_runs(df, _runs(services, run_ids))
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
    runs = _runs(services, run_ids)
    ev = services.store.evaluations(list(run_ids), metrics=[metric]) if run_ids else pd.DataFrame()
    id_sets = sorted({json.loads(c or "{}").get("data", {}).get("train_set", "") for c in runs.get("config", [])})
    if ev.empty:
        return pd.DataFrame(columns=["run_id", "step", "dataset", "value", "label", "strategy", "teacher"]), id_sets
    return _with_runs(ev, runs), id_sets


# -- HTML report ----------------------------------------------------------------------------------------

def html_report(services: Services, run_ids: Sequence[str], context: str = "combined") -> str:
    """A self-contained HTML page (plotly.js inlined once) comparing the runs: charts + tables."""
    run_ids = list(run_ids)
    table, _ = summary_table(services, run_ids)
    panels = [(n, context if n != "teacher_student_top5_alignment" else "img") for n in TEACHER_PANELS]
    panels += [("loss", "total"), ("lr", "")]
    frames = live_frames(services, run_ids, panels)
    figs = [charts.series_figure(frames[p], *p) for p in panels if not frames[p].empty]
    ev, id_sets = eval_frame(services, run_ids)
    if not ev.empty:
        figs.append(charts.eval_figure(ev, "accuracy", id_sets=id_sets))
    diff = config_diff(services, run_ids) if len(run_ids) > 1 else pd.DataFrame()
    return charts.html_page("TRACER Studio comparison", f"{len(run_ids)} runs: {', '.join(run_ids)}",
                            {"Summary": table, "Config differences (diff only)": diff}, figs)


# -- teacher kernel explorer (pure numpy, no training) -------------------------------------------------

@dataclass
class KernelView:
    weights: pd.DataFrame      # teacher, snapshot, weight  (binned when there are many snapshots)
    profile: pd.DataFrame      # teacher, step, pretrained_share, lag
    summary: pd.DataFrame      # one row per teacher
    bin_width: int


def kernel_view(total_steps: int, at_step: int, *, beta: float = 0.5, wma_every: int = 1, ema_every: int = 1,
                m_start: float = 0.05, m_end: float = 0.9, m_warmup: float = 0.2, max_bars: int = 400) -> KernelView:
    """EMA vs WMA teachers from :mod:`tracer_core.teachers.schedules` (the same functions training uses)."""
    if total_steps < 1:
        raise ConfigError("total steps must be >= 1")
    if beta <= 0:
        raise ConfigError(f"beta must be > 0, got {beta}")
    if not (0 <= m_start <= 1 and 0 <= m_end <= 1 and 0 <= m_warmup <= 1):
        raise ConfigError("EMA momentum start, end and warm-up must lie in [0, 1]")
    at_step = int(min(max(at_step, 0), total_steps - 1))
    mixes = {"EMA": update_weights("ema", total_steps, update_every=ema_every, momentum_start=m_start,
                                   momentum_end=m_end, momentum_warmup=m_warmup),
             "WMA": update_weights("wma", total_steps, beta=beta, update_every=wma_every)}
    n = at_step + 2
    width = max(1, -(-n // max_bars))
    w_rows, p_rows, s_rows = [], [], []
    for kind, mix in mixes.items():
        w = snapshot_weights(mix, at_step)
        if width > 1:
            w = np.add.reduceat(w, np.arange(0, n, width))
        w_rows.append(pd.DataFrame({"teacher": kind, "snapshot": np.arange(len(w)) * width, "weight": w}))
        prof = teacher_profile(mix)
        p_rows.append(pd.DataFrame({"teacher": kind, "step": np.arange(total_steps),
                                    "pretrained_share": prof["pretrained_share"], "lag": prof["lag"]}))
        s_rows.append({"teacher": kind, "updates": int((mix > 0).sum()),
                       f"θ₀ share at step {at_step}": float(prof["pretrained_share"][at_step]),
                       f"lag at step {at_step} (steps)": float(prof["lag"][at_step]),
                       "θ₀ share at end": float(prof["pretrained_share"][-1]),
                       "lag at end (steps)": float(prof["lag"][-1])})
    return KernelView(pd.concat(w_rows, ignore_index=True), pd.concat(p_rows, ignore_index=True),
                      pd.DataFrame(s_rows).set_index("teacher"), width)


# -- analysis pages (calibration, representations, attributions, robustness): tracer_core/api_analysis.py --

def __getattr__(name: str) -> Any:
    """``api.<name>`` for api_analysis.__all__ and reproduce.__all__, resolved lazily (api_analysis uses this module's helpers, so
    an eager import here would be circular; neither module imports torch at import time)."""
    from tracer_core import api_analysis, reproduce
    for module in (api_analysis, reproduce):
        if name in module.__all__:
            return getattr(module, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
