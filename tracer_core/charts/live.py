"""Live dynamics figures: runs overlaid per series, seed groups as bands, evaluations per eval set.

Colours encode the *strategy* (method + teacher kind: EMA orange, WMA blue, no teacher grey, ...), so runs of
the same strategy read as one family; seeds and repeats of a strategy differ by line dash.
"""
from __future__ import annotations

from typing import Iterable

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from .common import (CONTEXT_LABELS, DASHES, FALLBACK, STEP_AXIS, axis_title, bounded_range, empty_figure,
                     eval_metric_meta, layout, plain, rgba, series_meta, strategy_colours, titled, top_margin)


def _context(context: str) -> str:
    return CONTEXT_LABELS.get(context, context.replace("_", " "))


def series_figure(frame: pd.DataFrame, name: str, context: str = "", *, log_y: bool | None = None,
                  title: str | None = None, height: int = 380, smoothing_label: str = "") -> go.Figure:
    """Runs overlaid for one series. ``frame``: run_id, label, strategy, teacher, step, value[, smoothed].

    ``smoothed`` is the store's smoothing of each *full* logged series at these steps (never recomputed
    here from the downsampled points); where it differs from ``value`` the raw trace is drawn faint behind
    the smoothed curve of the same colour. ``smoothing_label`` (e.g. "EMA 0.6") goes into the title's
    second line, after the direction (the first line is the series name alone: see ``titled``).
    """
    meta = series_meta(name)
    y_title = axis_title(meta.label, meta.unit)
    log_y = meta.log_scale if log_y is None else log_y
    if frame.empty:
        return empty_figure(title or titled(meta.label, _context(context)), "No points yet for this series.",
                            y_title=y_title)
    colours = strategy_colours(frame)
    smoothed = "smoothed" in frame and not np.allclose(frame["smoothed"].to_numpy(np.float64),
                                                       frame["value"].to_numpy(np.float64), equal_nan=True)
    fig = go.Figure()
    dash_of: dict[str, int] = {}
    for run_id, g in frame.sort_values(["run_id", "step"]).groupby("run_id", sort=False):
        strategy = g["strategy"].iloc[0] if "strategy" in g else "run"
        colour = colours.get(strategy, FALLBACK[0])
        k = dash_of[strategy] = dash_of.get(strategy, -1) + 1
        label = plain(g["label"].iloc[0] if "label" in g else run_id)
        x = g["step"].tolist()
        y = g["value"].to_numpy(np.float64)
        if smoothed:
            fig.add_trace(go.Scatter(x=x, y=y.tolist(), mode="lines", name=f"{label} (raw)", legendgroup=str(run_id),
                                     showlegend=False, hoverinfo="skip", opacity=0.25,
                                     line=dict(color=colour, width=1, dash=DASHES[k % len(DASHES)])))
            y = g["smoothed"].to_numpy(np.float64)
        fig.add_trace(go.Scatter(x=x, y=y.tolist(), mode="lines+markers" if len(x) < 3 else "lines", name=label,
                                 legendgroup=str(run_id), meta={"run_id": str(run_id), "strategy": str(strategy)},
                                 line=dict(color=colour, width=2, dash=DASHES[k % len(DASHES)]),
                                 hovertemplate=f"{label}<br>step %{{x}}<br>{meta.label} %{{y:.4g}}<extra></extra>"))
    smooth_text = f"{plain(smoothing_label)}, raw faint" if smoothed and smoothing_label else ""
    title = title or titled(meta.label, _context(context), smooth_text)
    layout(fig, title, STEP_AXIS, y_title, log_y=log_y,
           y_range=bounded_range(meta, frame["value"].to_numpy(np.float64)), height=height)
    return fig


SPREAD_TEXT = {"std": "± 1 std", "sem": "± standard error", "ci95": "95 % CI", "minmax": "min–max"}


def band_figure(frame: pd.DataFrame, name: str, context: str = "", *, log_y: bool | None = None,
                center: str = "mean", spread: str = "std", title: str | None = None,
                height: int = 380) -> go.Figure:
    """Seed groups as a centre line + shaded band. ``frame`` (store.band + group labels): group, label,
    strategy, teacher, step, center, lo, hi, n, ... — the centre (mean | median) and the band (``spread``:
    std | sem | ci95 | minmax) were computed by the store on the runs interpolated onto one grid."""
    meta = series_meta(name)
    title = title or titled(meta.label, _context(context), f"{center} over seeds, {SPREAD_TEXT.get(spread, spread)}")
    y_title = axis_title(meta.label, meta.unit)
    log_y = meta.log_scale if log_y is None else log_y
    if frame.empty:
        return empty_figure(title, "No points yet for these seed groups.", y_title=y_title)
    colours = strategy_colours(frame)
    fig = go.Figure()
    for gid, g in frame.sort_values(["group", "step"]).groupby("group", sort=False):
        strategy = g["strategy"].iloc[0] if "strategy" in g else str(gid)
        colour = colours.get(strategy, FALLBACK[0])
        n = int(g["n"].max()) if "n" in g else 1
        label = f"{plain(g['label'].iloc[0])} (n={n})"
        x = g["step"].tolist()
        mid = g["center"].to_numpy(np.float64)
        lo, hi = g["lo"].to_numpy(np.float64), g["hi"].to_numpy(np.float64)
        lo, hi = np.where(np.isfinite(lo), lo, mid), np.where(np.isfinite(hi), hi, mid)   # one run: no spread
        if log_y:
            lo = np.where(lo > 0, lo, np.nan)
        fig.add_trace(go.Scatter(x=x + x[::-1], y=hi.tolist() + lo[::-1].tolist(), fill="toself",
                                 fillcolor=rgba(colour, 0.18), line=dict(width=0), hoverinfo="skip",
                                 name=f"{label} band", legendgroup=str(gid), showlegend=False))
        fig.add_trace(go.Scatter(x=x, y=mid.tolist(), mode="lines", name=label, legendgroup=str(gid),
                                 meta={"group": str(gid), "strategy": str(strategy)},
                                 line=dict(color=colour, width=2),
                                 hovertemplate=f"{label}<br>step %{{x}}<br>{center} %{{y:.4g}}<extra></extra>"))
    layout(fig, title, STEP_AXIS, y_title, log_y=log_y, height=height)
    fig.update_layout(legend_title_text="seed group")
    return fig


def eval_figure(frame: pd.DataFrame, metric: str = "accuracy", *, id_sets: Iterable[str] = (),
                title: str | None = None, height: int = 360) -> go.Figure:
    """One metric over training: a panel per eval set (in-distribution first), a line per run.
    ``frame``: run_id, label, strategy, teacher, dataset, step, value."""
    meta = eval_metric_meta(metric)
    title = title or titled(f"{meta.label} on the evaluation sets",
                            "as evaluations arrive; ID = the fine-tuning distribution")
    y_title = axis_title(meta.label, meta.unit)
    if frame.empty:
        return empty_figure(title, "No evaluation yet: runs evaluate every train.eval_every steps and at the end.",
                            y_title=y_title)
    id_sets = set(id_sets)
    sets = sorted(frame["dataset"].unique(), key=lambda d: (d not in id_sets, d))
    fig = make_subplots(rows=1, cols=len(sets), shared_yaxes=True, horizontal_spacing=0.02,
                        subplot_titles=[f"{plain(d)} ({'ID' if d in id_sets else 'OOD'})" for d in sets])
    colours = strategy_colours(frame)
    dash_of: dict[str, int] = {}
    for run_id, g in frame.sort_values(["run_id", "step"]).groupby("run_id", sort=False):
        strategy, label = g["strategy"].iloc[0], plain(g["label"].iloc[0])
        k = dash_of[strategy] = dash_of.get(strategy, -1) + 1
        for col, ds in enumerate(sets, start=1):
            d = g[g["dataset"] == ds]
            fig.add_trace(go.Scatter(x=d["step"].tolist(), y=d["value"].tolist(), mode="lines+markers", name=label,
                                     legendgroup=str(run_id), showlegend=col == 1,
                                     meta={"run_id": str(run_id), "dataset": str(ds), "strategy": str(strategy)},
                                     line=dict(color=colours.get(strategy, FALLBACK[0]), width=2,
                                               dash=DASHES[k % len(DASHES)]),
                                     hovertemplate=f"{label} · {plain(ds)}<br>step %{{x}}<br>{meta.label} %{{y:.4g}}"
                                                   "<extra></extra>"), row=1, col=col)
    layout(fig, title, "Step", y_title, height=height)
    fig.update_xaxes(title_text="Step")
    for col in range(2, len(sets) + 1):
        fig.update_yaxes(title_text="", row=1, col=col)
    fig.update_layout(hovermode="closest", margin=dict(t=top_margin(title, 110)), legend=dict(y=1.14))
    fig.update_annotations(font_size=12)
    return fig
