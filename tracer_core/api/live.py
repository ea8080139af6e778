"""Live dynamics page: the series present, one query for all panels (smoothed on the store's full series, one
step grid, optional zoomed step range), seed bands, evaluations over training."""
from __future__ import annotations

from tracer_core.lazy import lazy

from typing import Sequence

pd = lazy("pandas")

from tracer_core.metrics.smoothing import Smoothing

from .common import Services, id_set, runs_frame, strategy, with_runs

# the per-step teacher statistics drawn as live panels (plus a loss term and the learning rate)
TEACHER_PANELS = ("teacher_student_kl", "teacher_avg_entropy", "teacher_avg_confidence",
                  "teacher_student_agreement", "teacher_gt_prob", "teacher_student_top5_alignment")
# the page's smoothing choices: kind -> (label, parameter label, min, max, default, step)
SMOOTHING_KINDS = {"ema": ("EMA (debiased)", "EMA weight", 0.0, 0.999, 0.6, 0.01),
                   "mean": ("Running mean", "Window (logged points)", 1.0, 500.0, 10.0, 1.0),
                   "gaussian": ("Gaussian", "Sigma (logged points)", 0.0, 200.0, 3.0, 0.5),
                   "off": ("Off", "", 0.0, 0.0, 0.0, 1.0)}
BAND_SPREADS = {"std": "± 1 std", "sem": "± standard error", "ci95": "95 % CI", "minmax": "min–max"}
BAND_CENTERS = {"mean": "mean", "median": "median"}


def see_runs(services: Services, run_ids: Sequence[str] | None) -> None:
    """Make runs that another page has just queued (Home's demo, Launch, Runs hand-offs) visible to this
    page's reads. The store re-reads the data folder at most every ``refresh_interval_s``; a page opened
    within that interval of the submitting page's last read would see none of the new runs, show "No runs
    yet" (or older runs) and, with nothing active to refresh for, never pick them up."""
    if run_ids and not set(run_ids) <= set(services.store.list_runs(run_ids=list(run_ids))["run_id"]):
        services.store.refresh()


def smoothing_spec(kind: str, param: float) -> Smoothing | None:
    """The store's smoothing for the page's choice; ``None`` for "off" or a zero EMA weight / sigma.
    A bad kind or parameter raises ValueError naming it."""
    if kind == "off" or (kind in ("ema", "gaussian") and float(param) <= 0):
        return None
    return Smoothing(kind, float(param))


def smoothing_text(kind: str, param: float) -> str:
    """The smoothing named for a chart title ("EMA (debiased) 0.6"); "" when off."""
    return "" if smoothing_spec(kind, param) is None else f"{SMOOTHING_KINDS[kind][0]} {param:g}"


def zoom_range(lo: int | None, hi: int | None) -> tuple[tuple[int | None, int | None] | None, str, str]:
    """(step_range for the store or None for the full range, caption text, problem message or "")."""
    if lo is None and hi is None:
        return None, "", ""
    if lo is not None and hi is not None and lo > hi:
        return None, "", f"'From step' ({lo}) is after 'To step' ({hi}): showing the full range."
    return (lo, hi), f" (zoom: steps {'start' if lo is None else lo}–{'end' if hi is None else hi})", ""


def series_options(services: Services, run_ids: Sequence[str]) -> pd.DataFrame:
    """(name, context, label, unit, group, n_runs, n_points) present for the runs."""
    return services.store.series_catalog(list(run_ids)) if run_ids else pd.DataFrame(
        columns=["name", "context", "n_runs", "n_points", "label", "unit", "group"])


def step_bounds(services: Services, run_ids: Sequence[str]) -> tuple[int, int]:
    """(first, last) logged step over the runs' series, for the zoom control; (0, 0) before any point."""
    if not run_ids:
        return 0, 0
    df = services.store.series(list(run_ids), ["lr"], [""], max_points=5)
    if df.empty:
        df = services.store.series(list(run_ids), max_points=5)
    return (0, 0) if df.empty else (int(df["step"].min()), int(df["step"].max()))


def live_frames(services: Services, run_ids: Sequence[str], panels: Sequence[tuple[str, str]],
                max_points: int = 600, *, smoothing: Smoothing | None = None,
                step_range: tuple[int, int] | None = None) -> dict[tuple[str, str], pd.DataFrame]:
    """``(name, context) -> frame`` (run_id, step, value, smoothed, label, strategy, teacher).

    One store query for all panels, so every run of every panel shares one step grid (``frame.attrs["grid"]``;
    a 300-step and a 30,000-step run are bucketed alike) and a zoomed ``step_range`` holding at most
    ``max_points`` points per series comes back at full resolution. ``smoothed`` is the store's smoothing of
    the *full* logged series at the returned steps (equal to ``value`` when ``smoothing`` is None), so the
    curve never depends on how many points are shown."""
    cols = ["run_id", "step", "value", "smoothed", "label", "strategy", "teacher"]
    if not run_ids:
        return {p: pd.DataFrame(columns=cols) for p in panels}
    names = sorted({n for n, _ in panels})
    contexts = sorted({c for _, c in panels})
    df = services.store.series(list(run_ids), names, contexts, max_points=max_points, step_range=step_range,
                               smoothing=smoothing)
    grid = dict(df.attrs.get("grid") or {})
    if "smoothed" not in df:
        df = df.assign(smoothed=df["value"])
    df = with_runs(df, runs_frame(services, run_ids))
    out = {}
    for n, c in panels:
        out[(n, c)] = df[(df["name"] == n) & (df["context"] == c)].reset_index(drop=True)
        out[(n, c)].attrs["grid"] = grid
    return out


def band_frame(services: Services, run_ids: Sequence[str], name: str, context: str, *, center: str = "mean",
               spread: str = "std", smoothing: Smoothing | None = None,
               step_range: tuple[int, int] | None = None, max_points: int = 600) -> pd.DataFrame:
    """Seed groups among the runs (configs equal except the seed): per grid step ``center``/``lo``/``hi`` for
    the chosen centre and spread plus every statistic, runs interpolated onto one grid (store.band)."""
    groups = services.store.seed_groups(list(run_ids))
    if groups.empty:
        return pd.DataFrame()
    band = services.store.band(dict(zip(groups["group"], groups["run_ids"])), name, context, center=center,
                               spread=spread, smoothing=smoothing, max_points=max_points, step_range=step_range)
    if band.empty:
        return pd.DataFrame()
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
