"""Robustness figures: accuracy under L∞ attacks per model, and the WiSE-FT curve."""
from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from .calibration import ACC_AXIS
from .common import empty_figure, layout, plain

ATTACK_COLOURS = {"clean": "#2e9e5b", "FGSM": "#f29e4c", "PGD": "#b23a1b"}


def robustness_figure(table: pd.DataFrame, dataset: str = "", steps: int | None = None) -> go.Figure:
    """Grouped bars: clean / FGSM / PGD zero-shot accuracy per model. ``table``: api.robustness_table."""
    title = "Accuracy under L∞ attacks" + (f" — {plain(dataset)}" if dataset else "")
    if table.empty:
        return empty_figure(title, "Press the button to run the attacks.", "Model", ACC_AXIS)
    eps, n = float(table["eps"].iloc[0]), int(table["n"].iloc[0])
    fig = go.Figure()
    for attack, g in table.groupby("attack", sort=False):
        label = "clean" if attack == "clean" else (f"{attack} ({steps} steps)" if attack == "PGD" and steps else attack)
        fig.add_trace(go.Bar(x=g["model"].tolist(), y=g["accuracy"].tolist(), name=label,
                             marker_color=ATTACK_COLOURS.get(attack, "#8e44ad"), textposition="outside",
                             text=[f"{v:.2f}" for v in g["accuracy"]], meta={"attack": str(attack)},
                             hovertemplate="%{x}<br>" + label + " accuracy %{y:.3f}<extra></extra>"))
    layout(fig, f"{title} (ε = {eps * 255:.3g}/255, n = {n} images)", "Model", ACC_AXIS, height=380)
    fig.update_yaxes(range=[0, 1.1])
    fig.update_layout(barmode="group", hovermode="closest", legend_title_text="attack")
    return fig


def wise_figure(summary: pd.DataFrame, id_set: str = "", ood_sets: Sequence[str] = ()) -> go.Figure:
    """WiSE-FT: OOD against ID accuracy of θ_α for each α, labelled, with the two endpoints marked."""
    title = "WiSE-FT: weight-space interpolation between pretrained (α = 0) and fine-tuned (α = 1)"
    x_title = f"ID accuracy{f' on {plain(id_set)}' if id_set else ''} (fraction correct)"
    y_title = (f"OOD accuracy{f' on {plain(ood_sets[0])}' if len(ood_sets) == 1 else f', mean of {len(ood_sets)} sets'}"
               " (fraction correct)")
    if summary.empty or not summary["ood_accuracy"].notna().any():
        msg = ("Press the button to compute the curve." if summary.empty else
               "This run has no OOD eval set: choose at least one to draw ID against OOD accuracy.")
        return empty_figure(title, msg, x_title, y_title)
    s = summary.sort_values("alpha")
    fig = go.Figure(go.Scatter(x=s["id_accuracy"].tolist(), y=s["ood_accuracy"].tolist(), mode="lines+markers+text",
                               text=[f"α={a:g}" for a in s["alpha"]], textposition="top center", name="θ_α",
                               line=dict(color="#1f5fbf", width=2), marker=dict(size=8),
                               hovertemplate="α %{text}<br>ID %{x:.3f}<br>OOD %{y:.3f}<extra></extra>"))
    for alpha, name, colour, symbol in ((0.0, "pretrained θ₀ (α = 0)", "#6b6b6b", "square"),
                                        (1.0, "fine-tuned (α = 1)", "#e4572e", "star")):
        e = s[np.isclose(s["alpha"], alpha)]
        if not e.empty:
            fig.add_trace(go.Scatter(x=e["id_accuracy"].tolist(), y=e["ood_accuracy"].tolist(), mode="markers",
                                     name=name, marker=dict(size=16, color=colour, symbol=symbol,
                                                            line=dict(width=1, color="white")),
                                     hovertemplate=name + "<br>ID %{x:.3f}<br>OOD %{y:.3f}<extra></extra>"))
    if len(ood_sets) > 1:
        title += f"<br><sup>OOD = mean of {plain(', '.join(ood_sets))}</sup>"
    layout(fig, title, x_title, y_title, height=460)
    fig.update_layout(hovermode="closest", legend_title_text="model", margin=dict(t=110))
    return fig


def wise_alpha_figure(rows: pd.DataFrame) -> go.Figure:
    """Accuracy of θ_α on every eval set against α (ID solid, OOD dashed)."""
    title, x_title = "WiSE-FT: accuracy per eval set against α", "α (weight of the fine-tuned model, 0–1)"
    if rows.empty:
        return empty_figure(title, "Press the button to compute the curve.", x_title, ACC_AXIS)
    fig = go.Figure()
    palette = ["#1f5fbf", "#e4572e", "#2e9e5b", "#8e44ad", "#16a085", "#d35400", "#2c3e50"]
    for i, (ds, g) in enumerate(rows.sort_values("alpha").groupby("dataset", sort=False)):
        split = str(g["split"].iloc[0]).upper()
        fig.add_trace(go.Scatter(x=g["alpha"].tolist(), y=g["accuracy"].tolist(), mode="lines+markers",
                                 name=f"{plain(ds)} ({split})", line=dict(color=palette[i % len(palette)], width=2,
                                                                   dash="solid" if split == "ID" else "dash"),
                                 hovertemplate=f"{plain(ds)}<br>α %{{x:g}}<br>accuracy %{{y:.3f}}<extra></extra>"))
    layout(fig, title, x_title, ACC_AXIS, height=380)
    fig.update_layout(hovermode="closest", legend_title_text="eval set")
    return fig
