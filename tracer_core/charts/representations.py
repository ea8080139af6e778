"""Representation-similarity figures: layer × step heatmaps and per-layer curves (CKA, SVCCA)."""
from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from .common import STEP_AXIS, empty_figure, finish, plain, run_panels

KIND_LABELS = {"linear_cka": "Linear CKA", "linear_cka_debiased": "Debiased linear CKA", "svcca": "SVCCA"}
PAIR_LABELS = {"student_vs_pretrained": "student vs pretrained", "student_vs_teacher": "student vs teacher",
               "teacher_vs_pretrained": "teacher vs pretrained"}
PAIR_COLOURS = {"student_vs_pretrained": "#6b6b6b", "student_vs_teacher": "#8e44ad",
                "teacher_vs_pretrained": "#16a085"}


def similarity_heatmap_figure(frame: pd.DataFrame, pair: str, kind: str = "linear_cka", tower: str = "vision",
                              height: int = 380) -> go.Figure:
    """Layer × evaluation step heatmaps of one comparison, a panel per run, on one shared colour scale."""
    k = KIND_LABELS.get(kind, kind)
    title = f"{k} per layer over training — {PAIR_LABELS.get(pair, pair)} ({tower} tower)"
    y_title = "Layer (input → output)"
    sub = frame[frame["pair"] == pair] if not frame.empty else frame
    if frame.empty:
        return empty_figure(title, "No similarity rows for these runs.", STEP_AXIS, y_title)
    panels = run_panels(frame)
    fig = make_subplots(rows=1, cols=len(panels), shared_yaxes=True, horizontal_spacing=0.03,
                        subplot_titles=[f"{plain(g['label'].iloc[0])} ({g['strategy'].iloc[0]})" for _, g in panels])
    values = sub["value"].to_numpy(np.float64)
    zmin = float(np.nanmin(values)) if len(values) and np.isfinite(values).any() else 0.0
    zmax = float(np.nanmax(values)) if len(values) and np.isfinite(values).any() else 1.0
    layers = frame.drop_duplicates("layer_index").sort_values("layer_index")["layer"].tolist()
    for i, (rid, g) in enumerate(panels, start=1):
        h = g[g["pair"] == pair]
        if h.empty:
            fig.add_annotation(text="no teacher in this run" if "teacher" in pair else "no rows", showarrow=False,
                               x=0.5, y=0.5, xref=f"x{i if i > 1 else ''} domain", yref="y domain",
                               font=dict(color="#666666"))
            fig.add_trace(go.Heatmap(z=[[None]], x=[0], y=[layers[0]], showscale=False, name=plain(g["label"].iloc[0]),
                                     hoverinfo="skip"), row=1, col=i)
            continue
        piv = h.pivot_table(index="layer_index", columns="step", values="value").sort_index()
        fig.add_trace(go.Heatmap(
            z=piv.to_numpy().tolist(), x=[int(s) for s in piv.columns], y=[layers[j] for j in piv.index],
            zmin=zmin, zmax=zmax, colorscale="Viridis", name=plain(g["label"].iloc[0]), meta={"run_id": str(rid)},
            showscale=i == 1, colorbar=dict(title=dict(text=f"{k} (0–1)", side="right")),
            hovertemplate="step %{x}<br>%{y}<br>" + k + " %{z:.4f}<extra>" + plain(g["label"].iloc[0]) + "</extra>"),
            row=1, col=i)
    finish(fig, title, "Evaluation step (optimizer updates)", y_title, 1, len(panels), height=height, legend="run")
    fig.update_yaxes(categoryorder="array", categoryarray=layers, type="category", showgrid=False)
    fig.update_xaxes(type="category", showgrid=False)    # evaluation steps evenly spaced, one column each
    return fig


def similarity_layers_figure(frame: pd.DataFrame, step: int, kind: str = "linear_cka", tower: str = "vision",
                             height: int = 380) -> go.Figure:
    """Per-layer curves at one evaluation step: a panel per run, a line per comparison."""
    k = KIND_LABELS.get(kind, kind)
    title = f"{k} per layer at step {step} ({tower} tower)"
    x_title, y_title = "Layer (input → output)", f"{k} (0–1, 1 = same representation)"
    at = frame[frame["step"] == step] if not frame.empty else frame
    if at.empty:
        return empty_figure(title, f"No similarity rows at step {step}.", x_title, y_title)
    panels = run_panels(at)
    fig = make_subplots(rows=1, cols=len(panels), shared_yaxes=True, horizontal_spacing=0.03,
                        subplot_titles=[f"{plain(g['label'].iloc[0])} ({g['strategy'].iloc[0]})" for _, g in panels])
    for i, (rid, g) in enumerate(panels, start=1):
        for pair, p in g.groupby("pair", sort=False):
            p = p.sort_values("layer_index")
            fig.add_trace(go.Scatter(x=p["layer"].tolist(), y=p["value"].tolist(), mode="lines+markers",
                                     name=PAIR_LABELS.get(pair, pair), legendgroup=pair,
                                     showlegend=not any(t.legendgroup == pair for t in fig.data),
                                     meta={"run_id": str(rid), "pair": str(pair)},
                                     line=dict(color=PAIR_COLOURS.get(pair, "#333333"), width=2),
                                     hovertemplate="%{x}<br>" + k + " %{y:.4f}<extra>" + PAIR_LABELS.get(pair, pair)
                                                   + "</extra>"), row=1, col=i)
    fig.update_xaxes(type="category", tickangle=-30)
    return finish(fig, title, x_title, y_title, 1, len(panels), height=height, legend="comparison")
