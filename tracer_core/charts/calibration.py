"""Calibration figures: reliability diagrams side by side, confidence histograms, a metric over training."""
from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from .common import empty_figure, eval_metric_meta, finish, grid, plain, run_panels
from .live import eval_figure

CONF_AXIS = "Confidence (max softmax probability, 0–1)"
ACC_AXIS = "Accuracy (fraction correct)"
# model roles: not the strategy colours (EMA orange, WMA blue), which mark runs elsewhere in the app
ROLE_COLOURS = {"pretrained": "#6b6b6b", "student": "#2c3e50", "teacher": "#8e44ad"}


def reliability_figure(frame: pd.DataFrame, dataset: str = "", height: int = 420) -> go.Figure:
    """Reliability diagrams side by side (a panel per run): accuracy against mean confidence per confidence bin,
    student solid, teacher dashed, with the diagonal of perfect calibration. ``frame``: reliability_frame."""
    title = f"Reliability diagram — {plain(dataset)}" if dataset else "Reliability diagram"
    if frame.empty:
        return empty_figure(title, "No reliability bins for these runs and this eval set.", CONF_AXIS, ACC_AXIS)
    panels = run_panels(frame)
    rows, cols = grid(len(panels))
    names = [f"{plain(g['label'].iloc[0])} · step {int(g['step'].iloc[0])}" for _, g in panels]
    fig = make_subplots(rows=rows, cols=cols, subplot_titles=names, shared_yaxes=True, horizontal_spacing=0.04,
                        vertical_spacing=0.16)
    for i, (rid, g) in enumerate(panels):
        r, col = i // cols + 1, i % cols + 1
        fig.add_trace(go.Scatter(x=[0, 1], y=[0, 1], mode="lines", name="perfect calibration", legendgroup="diag",
                                 showlegend=i == 0, line=dict(color="#aaaaaa", dash="dot", width=1),
                                 hoverinfo="skip"), row=r, col=col)
        for model, m in g.groupby("model", sort=False):
            m = m[m["count"] > 0]
            colour = ROLE_COLOURS.get(str(model), "#2c3e50")
            text = [f"bin [{lo:.1f}, {hi:.1f}]<br>{int(n)} images, gap {gp:+.3f}"
                    for lo, hi, n, gp in zip(m["lo"], m["hi"], m["count"], m["gap"])]
            fig.add_trace(go.Scatter(
                x=m["mean_confidence"].tolist(), y=m["accuracy"].tolist(), mode="lines+markers", text=text,
                name=str(model), legendgroup=str(model), showlegend=not any(t.name == model for t in fig.data),
                meta={"run_id": str(rid), "model": str(model)},
                marker=dict(size=(6 + 14 * np.sqrt(m["share"].fillna(0))).tolist(), color=colour),
                line=dict(color=colour, width=2, dash="solid" if model == "student" else "dash"),
                hovertemplate=f"{model}<br>confidence %{{x:.3f}}<br>accuracy %{{y:.3f}}<br>%{{text}}<extra></extra>"),
                row=r, col=col)
    fig.update_xaxes(range=[-0.02, 1.02])
    fig.update_yaxes(range=[-0.02, 1.02])
    return finish(fig, title, CONF_AXIS, ACC_AXIS, rows, cols, height=height * rows, legend="model")


def confidence_histogram_figure(frame: pd.DataFrame, dataset: str = "", height: int = 300) -> go.Figure:
    """Images per confidence bin (a panel per run; student and teacher side by side)."""
    title = f"Images per confidence bin — {plain(dataset)}" if dataset else "Images per confidence bin"
    y_title = "Images in bin (count)"
    if frame.empty:
        return empty_figure(title, "No reliability bins for these runs and this eval set.", CONF_AXIS, y_title)
    panels = run_panels(frame)
    rows, cols = grid(len(panels))
    fig = make_subplots(rows=rows, cols=cols, shared_yaxes=True, horizontal_spacing=0.04, vertical_spacing=0.2,
                        subplot_titles=[plain(g["label"].iloc[0]) for _, g in panels])
    for i, (rid, g) in enumerate(panels):
        for model, m in g.groupby("model", sort=False):
            colour = ROLE_COLOURS.get(str(model), "#2c3e50")
            fig.add_trace(go.Bar(x=((m["lo"] + m["hi"]) / 2).tolist(), y=m["count"].tolist(), name=str(model),
                                 legendgroup=str(model), marker_color=colour, width=0.045 if g["model"].nunique() > 1
                                 else 0.09, offsetgroup=str(model), meta={"run_id": str(rid), "model": str(model)},
                                 showlegend=not any(t.name == model for t in fig.data),
                                 hovertemplate=f"{model}<br>confidence %{{x:.2f}} ± 0.05<br>%{{y}} images"
                                               "<extra></extra>"), row=i // cols + 1, col=i % cols + 1)
    fig.update_xaxes(range=[0, 1], dtick=0.1)
    fig.update_layout(barmode="group", bargap=0.05)
    return finish(fig, title, CONF_AXIS, y_title, rows, cols, height=height * rows, legend="model")


def calibration_trend_figure(frame: pd.DataFrame, metric: str, dataset: str, step: int | None = None,
                             id_sets: Sequence[str] = ()) -> go.Figure:
    """A student calibration metric of one eval set over training, the step shown above marked."""
    meta = eval_metric_meta(metric)
    fig = eval_figure(frame, metric, id_sets=id_sets, title=f"Student {meta.label} on {plain(dataset)} over training",
                           height=320)
    if step is not None and not frame.empty:
        fig.add_vline(x=step, line_dash="dot", line_color="#888888")
    return fig
