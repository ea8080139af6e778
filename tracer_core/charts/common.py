"""Shared pieces of every figure builder: smoothing, labels, strategy colours, the common layout and the
empty-figure message. Labels, units and bounds come from the store schema's series metadata; teacher-kind
colours from the teacher registry (``tracer_core.teachers.KINDS``), so charts never import the api.
"""
from __future__ import annotations

import html
import math
from typing import Iterable

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from tracer_core.store.schema import eval_metric_meta, series_meta
from tracer_core.teachers import KINDS

__all__ = ["STEP_AXIS", "CONTEXT_LABELS", "plain", "smooth", "axis_title", "series_label", "titled",
           "strategy_colours", "empty_figure", "eval_metric_meta", "series_meta"]

STEP_AXIS = "Training step (optimizer updates)"
CONTEXT_LABELS = {"combined": "image↔text mean", "img": "image→text", "text": "text→image", "": "",
                  "total": "total (optimised sum)"}
TEACHER_COLOURS = {name: list(kind.colours) for name, kind in KINDS.items()}
FALLBACK = ["#8e44ad", "#16a085", "#c0392b", "#d35400", "#2c3e50", "#27ae60"]
DASHES = ["solid", "dash", "dot", "dashdot", "longdash", "longdashdot"]
_FONT = dict(family="Inter, Segoe UI, Helvetica, Arial, sans-serif", size=13)
_MAX_COLS = 4


def plain(value) -> str:
    """User text (run labels, dataset and class names) for plotly titles, legends and hover labels, which
    parse a subset of HTML: escaped, so ``<b>`` or ``<a href=...>`` in a run name is shown, not rendered."""
    return html.escape(str(value), quote=False)


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


def titled(main: str, *details: str) -> str:
    """A title that fits a half-width panel (~480 px in two columns): plotly never wraps a title and cuts it at
    the right edge, so the short name stays on the first line and the details (direction, band, smoothing) go
    smaller on a second, joined by " · "; ``layout`` makes room for the extra line."""
    rest = " · ".join(d for d in details if d)
    return f"{main}<br><sup>{rest}</sup>" if rest else main


def top_margin(title: str, base: int) -> int:
    """``base`` px above the plot (title + legend) plus 18 px per extra title line (each ``<br>``)."""
    return base + 18 * title.count("<br>")


def strategy_colours(frame: pd.DataFrame) -> dict[str, str]:
    """``strategy -> colour`` from the frame's ``strategy``/``teacher`` columns (stable within a figure)."""
    if frame.empty or "strategy" not in frame:
        return {}
    used: dict[str, int] = {}
    out: dict[str, str] = {}
    pairs = frame[["strategy", "teacher"]].drop_duplicates() if "teacher" in frame else \
        frame[["strategy"]].drop_duplicates().assign(teacher="")
    for strategy, teacher in sorted(pairs.itertuples(index=False), key=lambda t: str(t[0])):
        palette = TEACHER_COLOURS.get(str(teacher), FALLBACK)
        i = used.get(str(teacher), 0)
        used[str(teacher)] = i + 1
        out.setdefault(strategy, palette[i % len(palette)])
    return out


def rgba(hex_colour: str, alpha: float) -> str:
    h = hex_colour.lstrip("#")
    r, g, b = (int(h[i:i + 2], 16) for i in (0, 2, 4))
    return f"rgba({r},{g},{b},{alpha})"


def layout(fig: go.Figure, title: str, x_title: str, y_title: str, *, log_y: bool = False,
            y_range: tuple[float | None, float | None] | None = None, height: int = 380) -> go.Figure:
    fig.update_layout(title=dict(text=title, x=0.01, xanchor="left", y=0.97, yanchor="top"), template="plotly_white",
                      height=height, font=_FONT, margin=dict(l=60, r=20, t=top_margin(title, 90), b=50),
                      hovermode="x unified",
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
    layout(fig, title, x_title, y_title)
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False)
    return fig


def bounded_range(meta, values: np.ndarray) -> tuple[float | None, float | None] | None:
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


# -- panel grids (a panel per run) ----------------------------------------------------------------------

def grid(n: int) -> tuple[int, int]:
    cols = min(max(n, 1), _MAX_COLS)
    return math.ceil(max(n, 1) / cols), cols


def run_panels(frame: pd.DataFrame) -> list[tuple[str, pd.DataFrame]]:
    return [(rid, g) for rid, g in frame.groupby("run_id", sort=False)]


def finish(fig: go.Figure, title: str, x_title: str, y_title: str, rows: int, cols: int, *, height: int,
            legend: str) -> go.Figure:
    layout(fig, title, x_title, y_title, height=height)
    for r in range(1, rows + 1):
        for col in range(1, cols + 1):
            fig.update_xaxes(title_text=x_title if r == rows else "", row=r, col=col)
            fig.update_yaxes(title_text=y_title if col == 1 else "", row=r, col=col)
    fig.update_layout(hovermode="closest", legend_title_text=legend, margin=dict(t=top_margin(title, 120)),
                      legend=dict(y=1.1))
    fig.update_annotations(font_size=12)
    return fig
