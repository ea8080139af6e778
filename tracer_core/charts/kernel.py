"""Teacher kernel explorer figures: snapshot weights inside EMA and WMA teachers, and their profiles."""
from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from tracer_core.teachers import KINDS

from .common import FALLBACK, STEP_AXIS, empty_figure, layout

# keyed by the kind's label ("EMA", "WMA"): the explorer's frames name teachers as the legend shows them
_KIND_COLOURS = {kind.label: kind.colours[0] for kind in KINDS.values()}


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
                             marker_color=_KIND_COLOURS.get(kind, FALLBACK[i]), marker_line_width=0,
                             hovertemplate="θ%{x}: %{y:.3g}<extra>" + kind + "</extra>"), row=1, col=i)
        fig.update_xaxes(title_text="Snapshot j (θ₀ = pretrained)", row=1, col=i)
    layout(fig, title, "Snapshot j (θ₀ = pretrained)", "Weight in the teacher (fraction)", log_y=log_y,
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
                                 line=dict(color=_KIND_COLOURS.get(str(kind), FALLBACK[0]), width=2),
                                 hovertemplate=f"{kind}<br>step %{{x}}<br>%{{y:.4g}}<extra></extra>"))
    layout(fig, title, STEP_AXIS, y_title, log_y=log_y, height=height)
    if mark_step is not None:
        fig.add_vline(x=mark_step, line_dash="dot", line_color="#888888")
    fig.update_layout(legend_title_text="teacher")
    return fig
