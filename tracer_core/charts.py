"""DataFrame -> plotly figure builders for the dashboard (no streamlit, no torch, no duckdb).

Labels, units, bounds and log-scale defaults come from the store schema's series metadata
(:mod:`tracer_core.store.schema`), so a new statistic gets a titled, labelled chart without touching a page.

Every builder returns a figure with a title, axis titles (with units) and a legend. An empty frame gives a
figure that says why it is empty instead of blank axes (pages normally show ``st.info`` before that).

Colours encode the *strategy* (method + teacher kind: EMA orange, WMA blue, no teacher grey, ...), so runs of
the same strategy read as one family; seeds and repeats of a strategy differ by line dash.
"""
from __future__ import annotations

import math
from typing import Iterable, Mapping

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from tracer_core.store.schema import eval_metric_meta, series_meta

STEP_AXIS = "Training step (optimizer updates)"
CONTEXT_LABELS = {"combined": "image↔text mean", "img": "image→text", "text": "text→image", "": "",
                  "total": "total (optimised sum)"}
_TEACHER_COLOURS = {"wma": ["#1f5fbf", "#4a90e2", "#0b3d91", "#7fb2f0"],
                    "ema": ["#e4572e", "#f29e4c", "#b23a1b", "#f6c28b"],
                    "frozen": ["#2e9e5b", "#7cc68d", "#1b6b3c"],
                    "none": ["#6b6b6b", "#9a9a9a", "#3d3d3d", "#b8b8b8"]}
_FALLBACK = ["#8e44ad", "#16a085", "#c0392b", "#d35400", "#2c3e50", "#27ae60"]
_DASHES = ["solid", "dash", "dot", "dashdot", "longdash", "longdashdot"]
_FONT = dict(family="Inter, Segoe UI, Helvetica, Arial, sans-serif", size=13)


# -- smoothing -----------------------------------------------------------------------------------------

def smooth(values: Iterable[float], weight: float) -> np.ndarray:
    """Debiased exponential moving average, as TensorBoard draws it (tensorboard#610 / PR #639).

    ``m_k = w m_{k-1} + (1 - w) v_k`` with ``m_0 = 0``, shown as ``m_k / (1 - w^k)``, so the first points are
    not pulled towards zero. Non-finite values are passed through and do not enter the average.
    """
    v = np.asarray(list(values), dtype=np.float64)
    if weight <= 0 or len(v) == 0:
        return v
    w = min(float(weight), 0.999)
    out = np.empty_like(v)
    last, n = 0.0, 0
    for i, x in enumerate(v):
        if not math.isfinite(x):
            out[i] = x
            continue
        last = last * w + (1.0 - w) * x
        n += 1
        out[i] = last / (1.0 - w ** n)
    return out


# -- labels --------------------------------------------------------------------------------------------

def axis_title(label: str, unit: str) -> str:
    return f"{label} ({unit})" if unit else f"{label} (unitless)"


def series_label(name: str, context: str = "") -> str:
    meta = series_meta(name)
    ctx = CONTEXT_LABELS.get(context, context.replace("_", " "))
    return f"{meta.label} — {ctx}" if ctx else meta.label


def strategy_colours(frame: pd.DataFrame) -> dict[str, str]:
    """``strategy -> colour`` from the frame's ``strategy``/``teacher`` columns (stable within a figure)."""
    if frame.empty or "strategy" not in frame:
        return {}
    used: dict[str, int] = {}
    out: dict[str, str] = {}
    pairs = frame[["strategy", "teacher"]].drop_duplicates() if "teacher" in frame else \
        frame[["strategy"]].drop_duplicates().assign(teacher="")
    for strategy, teacher in sorted(pairs.itertuples(index=False), key=lambda t: str(t[0])):
        palette = _TEACHER_COLOURS.get(str(teacher), _FALLBACK)
        i = used.get(str(teacher), 0)
        used[str(teacher)] = i + 1
        out.setdefault(strategy, palette[i % len(palette)])
    return out


def _rgba(hex_colour: str, alpha: float) -> str:
    h = hex_colour.lstrip("#")
    r, g, b = (int(h[i:i + 2], 16) for i in (0, 2, 4))
    return f"rgba({r},{g},{b},{alpha})"


def _layout(fig: go.Figure, title: str, x_title: str, y_title: str, *, log_y: bool = False,
            y_range: tuple[float | None, float | None] | None = None, height: int = 380) -> go.Figure:
    fig.update_layout(title=dict(text=title, x=0.01, xanchor="left", y=0.97, yanchor="top"), template="plotly_white",
                      height=height, font=_FONT, margin=dict(l=60, r=20, t=90, b=50), hovermode="x unified",
                      legend=dict(title_text="run", orientation="h", yanchor="bottom", y=1.01, x=0, xanchor="left"),
                      showlegend=True)
    fig.update_xaxes(title_text=x_title, showgrid=True, gridcolor="#eeeeee", zeroline=False)
    fig.update_yaxes(title_text=y_title, showgrid=True, gridcolor="#eeeeee", zeroline=False,
                     type="log" if log_y else "linear", exponentformat="power" if log_y else "B",
                     minor=dict(showgrid=False), nticks=6 if log_y else None)
    if y_range and not log_y and None not in y_range:
        fig.update_yaxes(range=list(y_range))
    return fig


def empty_figure(title: str, message: str, x_title: str = STEP_AXIS, y_title: str = "") -> go.Figure:
    fig = go.Figure()
    fig.add_annotation(text=message, x=0.5, y=0.5, xref="paper", yref="paper", showarrow=False,
                       font=dict(size=14, color="#666666"))
    _layout(fig, title, x_title, y_title)
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False)
    return fig


def _bounded_range(meta, values: np.ndarray) -> tuple[float | None, float | None] | None:
    """Use the metric's natural bounds ([0, 1] for probabilities) when the data fill a good part of them."""
    if meta.lo is None or meta.hi is None or not len(values):
        return None
    finite = values[np.isfinite(values)]
    if not len(finite):
        return None
    span = meta.hi - meta.lo
    lo, hi = float(finite.min()), float(finite.max())
    if hi - lo > 0.3 * span:
        pad = 0.03 * span
        return (meta.lo - pad, meta.hi + pad)
    return None


# -- training series -----------------------------------------------------------------------------------

def series_figure(frame: pd.DataFrame, name: str, context: str = "", *, smoothing: float = 0.0,
                  log_y: bool | None = None, title: str | None = None, height: int = 380) -> go.Figure:
    """Runs overlaid for one series. ``frame``: run_id, label, strategy, teacher, step, value.

    With smoothing > 0 the raw trace is drawn faint behind the debiased-EMA curve of the same colour.
    """
    meta = series_meta(name)
    title = title or series_label(name, context)
    y_title = axis_title(meta.label, meta.unit)
    log_y = meta.log_scale if log_y is None else log_y
    if frame.empty:
        return empty_figure(title, "No points yet for this series.", y_title=y_title)
    colours = strategy_colours(frame)
    fig = go.Figure()
    dash_of: dict[str, int] = {}
    for run_id, g in frame.sort_values(["run_id", "step"]).groupby("run_id", sort=False):
        strategy = g["strategy"].iloc[0] if "strategy" in g else "run"
        colour = colours.get(strategy, _FALLBACK[0])
        k = dash_of[strategy] = dash_of.get(strategy, -1) + 1
        label = str(g["label"].iloc[0]) if "label" in g else str(run_id)
        x = g["step"].tolist()
        y = g["value"].to_numpy(np.float64)
        if smoothing > 0:
            fig.add_trace(go.Scatter(x=x, y=y.tolist(), mode="lines", name=f"{label} (raw)", legendgroup=str(run_id),
                                     showlegend=False, hoverinfo="skip", opacity=0.25,
                                     line=dict(color=colour, width=1, dash=_DASHES[k % len(_DASHES)])))
            y = smooth(y, smoothing)
        fig.add_trace(go.Scatter(x=x, y=y.tolist(), mode="lines+markers" if len(x) < 3 else "lines", name=label,
                                 legendgroup=str(run_id), meta={"run_id": str(run_id), "strategy": str(strategy)},
                                 line=dict(color=colour, width=2, dash=_DASHES[k % len(_DASHES)]),
                                 hovertemplate=f"{label}<br>step %{{x}}<br>{meta.label} %{{y:.4g}}<extra></extra>"))
    _layout(fig, title, STEP_AXIS, y_title, log_y=log_y,
            y_range=_bounded_range(meta, frame["value"].to_numpy(np.float64)), height=height)
    return fig


def band_figure(frame: pd.DataFrame, name: str, context: str = "", *, smoothing: float = 0.0,
                log_y: bool | None = None, band: str = "std", title: str | None = None,
                height: int = 380) -> go.Figure:
    """Seed groups as mean line + shaded band. ``frame``: group, label, strategy, teacher, step, mean, std,
    lo, hi, n. ``band``: "std" (mean ± 1 sample std) or "minmax" (range over seeds)."""
    meta = series_meta(name)
    title = title or f"{series_label(name, context)} — mean over seeds"
    y_title = axis_title(meta.label, meta.unit)
    log_y = meta.log_scale if log_y is None else log_y
    if frame.empty:
        return empty_figure(title, "No points yet for these seed groups.", y_title=y_title)
    colours = strategy_colours(frame)
    fig = go.Figure()
    for gid, g in frame.sort_values(["group", "step"]).groupby("group", sort=False):
        strategy = g["strategy"].iloc[0] if "strategy" in g else str(gid)
        colour = colours.get(strategy, _FALLBACK[0])
        n = int(g["n"].max()) if "n" in g else 1
        label = f"{g['label'].iloc[0]} (n={n})"
        x = g["step"].tolist()
        mean = smooth(g["mean"].to_numpy(np.float64), smoothing)
        if band == "minmax":
            lo, hi = smooth(g["lo"].to_numpy(np.float64), smoothing), smooth(g["hi"].to_numpy(np.float64), smoothing)
        else:
            std = np.nan_to_num(smooth(g["std"].to_numpy(np.float64), smoothing))
            lo, hi = mean - std, mean + std
        if log_y:
            lo = np.where(lo > 0, lo, np.nan)
        fig.add_trace(go.Scatter(x=x + x[::-1], y=hi.tolist() + lo[::-1].tolist(), fill="toself",
                                 fillcolor=_rgba(colour, 0.18), line=dict(width=0), hoverinfo="skip",
                                 name=f"{label} band", legendgroup=str(gid), showlegend=False))
        fig.add_trace(go.Scatter(x=x, y=mean.tolist(), mode="lines", name=label, legendgroup=str(gid),
                                 meta={"group": str(gid), "strategy": str(strategy)},
                                 line=dict(color=colour, width=2),
                                 hovertemplate=f"{label}<br>step %{{x}}<br>mean %{{y:.4g}}<extra></extra>"))
    what = "± 1 std over seeds" if band == "std" else "min–max over seeds"
    _layout(fig, f"{title} ({what})", STEP_AXIS, y_title, log_y=log_y, height=height)
    fig.update_layout(legend_title_text="seed group")
    return fig


# -- evaluations ---------------------------------------------------------------------------------------

def eval_figure(frame: pd.DataFrame, metric: str = "accuracy", *, id_sets: Iterable[str] = (),
                title: str | None = None, height: int = 360) -> go.Figure:
    """One metric over training: a panel per eval set (in-distribution first), a line per run.
    ``frame``: run_id, label, strategy, teacher, dataset, step, value."""
    meta = eval_metric_meta(metric)
    title = title or f"{meta.label} on the evaluation sets as evaluations arrive (ID = fine-tuning distribution)"
    y_title = axis_title(meta.label, meta.unit)
    if frame.empty:
        return empty_figure(title, "No evaluation yet: runs evaluate every train.eval_every steps and at the end.",
                            y_title=y_title)
    id_sets = set(id_sets)
    sets = sorted(frame["dataset"].unique(), key=lambda d: (d not in id_sets, d))
    fig = make_subplots(rows=1, cols=len(sets), shared_yaxes=True, horizontal_spacing=0.02,
                        subplot_titles=[f"{d} ({'ID' if d in id_sets else 'OOD'})" for d in sets])
    colours = strategy_colours(frame)
    dash_of: dict[str, int] = {}
    for run_id, g in frame.sort_values(["run_id", "step"]).groupby("run_id", sort=False):
        strategy, label = g["strategy"].iloc[0], str(g["label"].iloc[0])
        k = dash_of[strategy] = dash_of.get(strategy, -1) + 1
        for col, ds in enumerate(sets, start=1):
            d = g[g["dataset"] == ds]
            fig.add_trace(go.Scatter(x=d["step"].tolist(), y=d["value"].tolist(), mode="lines+markers", name=label,
                                     legendgroup=str(run_id), showlegend=col == 1,
                                     meta={"run_id": str(run_id), "dataset": str(ds), "strategy": str(strategy)},
                                     line=dict(color=colours.get(strategy, _FALLBACK[0]), width=2,
                                               dash=_DASHES[k % len(_DASHES)]),
                                     hovertemplate=f"{label} · {ds}<br>step %{{x}}<br>{meta.label} %{{y:.4g}}"
                                                   "<extra></extra>"), row=1, col=col)
    _layout(fig, title, "Step", y_title, height=height)
    fig.update_xaxes(title_text="Step")
    for col in range(2, len(sets) + 1):
        fig.update_yaxes(title_text="", row=1, col=col)
    fig.update_layout(hovermode="closest", margin=dict(t=110), legend=dict(y=1.14))
    fig.update_annotations(font_size=12)
    return fig


# -- teacher kernel explorer ---------------------------------------------------------------------------

_KIND_COLOURS = {"EMA": _TEACHER_COLOURS["ema"][0], "WMA": _TEACHER_COLOURS["wma"][0]}


def kernel_weights_figure(frame: pd.DataFrame, at_step: int, *, log_y: bool = False, height: int = 380) -> go.Figure:
    """Weight of each student snapshot theta_j inside the teacher after step ``at_step``, EMA and WMA side by
    side. ``frame``: teacher ("EMA"/"WMA"), snapshot, weight."""
    title = f"Weight of each student snapshot in the teacher after step {at_step}"
    if frame.empty:
        return empty_figure(title, "Choose at least one training step.", "Snapshot θⱼ (student after step j−1)",
                            "Weight in the teacher (fraction)")
    kinds = list(dict.fromkeys(frame["teacher"]))
    fig = make_subplots(rows=1, cols=len(kinds), shared_yaxes=True, subplot_titles=kinds, horizontal_spacing=0.06)
    for i, kind in enumerate(kinds, start=1):
        g = frame[frame["teacher"] == kind]
        fig.add_trace(go.Bar(x=g["snapshot"].tolist(), y=g["weight"].tolist(), name=f"{kind} teacher",
                             marker_color=_KIND_COLOURS.get(kind, _FALLBACK[i]), marker_line_width=0,
                             hovertemplate="θ%{x}: %{y:.3g}<extra>" + kind + "</extra>"), row=1, col=i)
        fig.update_xaxes(title_text="Snapshot j (θ₀ = pretrained)", row=1, col=i)
    _layout(fig, title, "Snapshot j (θ₀ = pretrained)", "Weight in the teacher (fraction)", log_y=log_y,
            height=height)
    fig.update_layout(bargap=0.05, hovermode="closest", legend_title_text="teacher", margin=dict(t=120),
                      legend=dict(y=1.12))
    fig.update_annotations(font_size=12)
    for i in range(2, len(kinds) + 1):
        fig.update_yaxes(title_text="", row=1, col=i)
    return fig


def profile_figure(frame: pd.DataFrame, column: str, *, title: str, y_title: str, log_y: bool = False,
                   mark_step: int | None = None, height: int = 340) -> go.Figure:
    """One teacher-profile quantity over training for EMA and WMA. ``frame``: teacher, step, <column>."""
    if frame.empty:
        return empty_figure(title, "Set total steps >= 1.", STEP_AXIS, y_title)
    fig = go.Figure()
    for kind, g in frame.groupby("teacher", sort=False):
        y = g[column].to_numpy(np.float64)
        if log_y:
            y = np.where(y > 0, y, np.nan)
        fig.add_trace(go.Scatter(x=g["step"].tolist(), y=y.tolist(), mode="lines", name=f"{kind} teacher",
                                 line=dict(color=_KIND_COLOURS.get(str(kind), _FALLBACK[0]), width=2),
                                 hovertemplate=f"{kind}<br>step %{{x}}<br>%{{y:.4g}}<extra></extra>"))
    _layout(fig, title, STEP_AXIS, y_title, log_y=log_y, height=height)
    if mark_step is not None:
        fig.add_vline(x=mark_step, line_dash="dot", line_color="#888888")
    fig.update_layout(legend_title_text="teacher")
    return fig


# -- report --------------------------------------------------------------------------------------------

def html_page(title: str, intro: str, tables: Mapping[str, pd.DataFrame], figures: Iterable[go.Figure]) -> str:
    """A self-contained HTML page: plotly.js inlined once, then the tables and the interactive charts."""
    esc = lambda s: str(s).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    figs = [f.to_html(full_html=False, include_plotlyjs="inline" if i == 0 else False)
            for i, f in enumerate(figures)]
    body = [f"<h1>{esc(title)}</h1><p>{esc(intro)}</p>"]
    for heading, table in tables.items():
        body.append(f"<h2>{esc(heading)}</h2>")
        body.append(table.to_html(float_format=lambda v: f"{v:.4g}", na_rep="–") if not table.empty
                    else "<p>Nothing to show.</p>")
    body += ["<h2>Training dynamics</h2>", *(figs or ["<p>No series recorded yet.</p>"])]
    style = ("body{font-family:Inter,Segoe UI,Helvetica,Arial,sans-serif;margin:2em;color:#1c2333}"
             "table{border-collapse:collapse;font-size:13px}td,th{border:1px solid #ddd;padding:4px 8px}")
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{esc(title)}</title><style>{style}</style>"
            f"</head><body>{''.join(body)}</body></html>")


# -- tables --------------------------------------------------------------------------------------------

def style_best(table: pd.DataFrame, directions: Mapping[str, bool | None], fmt: str = "{:.4g}"):
    """A pandas Styler that highlights the best value of each column whose direction is known
    (``True``: higher is better, ``False``: lower is better). Numbers are pre-formatted as text, missing
    values as "–" (Streamlit would print NaN as "None")."""
    numeric = [c for c in table.columns if pd.api.types.is_numeric_dtype(table[c])]

    def _mark(col: pd.Series):
        hib = directions.get(col.name)
        values = pd.to_numeric(table[col.name], errors="coerce") if col.name in numeric else None
        if hib is None or values is None or values.notna().sum() < 2:
            return [""] * len(col)
        best = values.max() if hib else values.min()
        return ["background-color: #d7f0dd; font-weight: 600" if v == best else "" for v in values]

    text = table.copy()
    for c in numeric:
        text[c] = [("–" if pd.isna(v) else fmt.format(v)) for v in table[c]]
    return text.style.apply(_mark)


# -- analysis pages: tracer_core/charts_analysis.py ------------------------------------------------------------

def __getattr__(name: str):
    """``charts.<name>`` for charts_analysis.__all__, resolved lazily (charts_analysis uses this module's
    helpers, so an eager import here would be circular)."""
    from tracer_core import charts_analysis
    if name in charts_analysis.__all__:
        return getattr(charts_analysis, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
