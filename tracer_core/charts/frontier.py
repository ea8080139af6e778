"""The ID–OOD plane: runs, seed means with error bars, the zero-shot model and the frontier (accuracy in %)."""
from __future__ import annotations

import math
from typing import Mapping

import pandas as pd
import plotly.graph_objects as go

from .common import empty_figure, layout, plain, strategy_colours

FRONTIER_COLOUR = "#1f5fbf"


def _pct(values) -> list[float]:
    return [100 * float(v) for v in values]


def _axes(id_set: str, ood_label: str) -> tuple[str, str]:
    short = "OOD mean" if plain(ood_label).startswith("mean") else f"OOD ({plain(ood_label)})"
    return f"ID accuracy{f' on {plain(id_set)}' if id_set else ''} (accuracy, %)", f"{short} (accuracy, %)"


def frontier_figure(points: pd.DataFrame, groups: pd.DataFrame | None = None, zero_shot: Mapping | None = None,
                    curve: pd.DataFrame | None = None, id_set: str = "", ood_label: str = "mean of the OOD sets",
                    frontier_label: str = "WiSE-FT frontier") -> go.Figure:
    """``points``: api.plane_points; ``groups``: per-group seed means (api.er_tables' second frame, or None);
    ``zero_shot``: {"label", "id", "ood"}; ``curve``: alpha, id_accuracy, ood_accuracy (the frontier)."""
    title = ("ID vs OOD accuracy: every run against the frontier"
             f"<br><sup>OOD = {plain(ood_label)}</sup>")
    x_title, y_title = _axes(id_set, ood_label)
    if points.empty:
        return empty_figure(title, "No run has both an ID and an OOD evaluation: select runs with an OOD eval set.",
                            x_title, y_title)
    fig = go.Figure()
    if curve is not None and not curve.empty:
        c = curve.sort_values("alpha")
        fig.add_trace(go.Scatter(x=_pct(c["id_accuracy"]), y=_pct(c["ood_accuracy"]), mode="lines+markers+text",
                                 name=plain(frontier_label), line=dict(color=FRONTIER_COLOUR, width=2, dash="dot"),
                                 text=[f"α={a:g}" for a in c["alpha"]], textposition="bottom right",
                                 textfont=dict(size=10, color=FRONTIER_COLOUR), marker=dict(size=6),
                                 hovertemplate="α %{text}<br>ID %{x:.1f} %<br>OOD %{y:.1f} %<extra></extra>"))
    colours = strategy_colours(points)
    runs = points[points["method"] != "zeroshot"] if zero_shot and "method" in points else points
    for strat, g in runs.groupby("strategy", sort=True):
        fig.add_trace(go.Scatter(x=_pct(g["id"]), y=_pct(g["ood"]), mode="markers", name=plain(strat),
                                 marker=dict(size=9, color=colours.get(strat), opacity=0.55),
                                 text=[plain(x) for x in g["label"]], legendgroup=plain(strat),
                                 hovertemplate="%{text}<br>ID %{x:.1f} %<br>OOD %{y:.1f} %<extra></extra>"))
    if groups is not None and not groups.empty:
        multi = groups[groups["n"] > 1]
        if not multi.empty:
            fig.add_trace(go.Scatter(
                x=_pct(multi["id mean"]), y=_pct(multi["ood mean"]), mode="markers", name="seed mean ± std",
                marker=dict(size=13, symbol="diamond", color="#1c2333", line=dict(width=1, color="white")),
                error_x=dict(type="data", array=[0 if math.isnan(v) else 100 * v for v in multi["id std"]]),
                error_y=dict(type="data", array=[0 if math.isnan(v) else 100 * v for v in multi["ood std"]]),
                text=[f"{plain(g)} (n = {n})" for g, n in zip(multi["group_label"], multi["n"])],
                hovertemplate="%{text}<br>ID %{x:.1f} %<br>OOD %{y:.1f} %<extra></extra>"))
    if zero_shot:
        fig.add_trace(go.Scatter(x=[100 * zero_shot["id"]], y=[100 * zero_shot["ood"]], mode="markers",
                                 name=plain(zero_shot.get("label", "zero-shot")),
                                 marker=dict(size=15, symbol="square", color="#6b6b6b", line=dict(width=1, color="white")),
                                 hovertemplate="zero-shot<br>ID %{x:.1f} %<br>OOD %{y:.1f} %<extra></extra>"))
    layout(fig, title, x_title, y_title, height=520)
    fig.update_layout(hovermode="closest", margin=dict(l=60, r=20, t=80, b=50),
                      legend=dict(title_text="model / strategy", orientation="v", x=1.02, y=1, xanchor="left",
                                  yanchor="top"))
    return fig


SIGN_STYLES = {"+": "color: #1b7a3a; font-weight: 700", "-": "color: #b23a1b; font-weight: 700",
               "0": "color: #555555", "n/a": "color: #888888"}


def sign_style(table: pd.DataFrame, fmt: str = "{:.1f}"):
    """A Styler for an effective-robustness table: numbers at one decimal ("–" when missing), the "sign"
    column written + / − / 0 / n/a in green / red / grey, so the verdict reads at a glance."""
    text = table.copy()
    for c in text.columns:
        if pd.api.types.is_float_dtype(text[c]):
            text[c] = ["–" if pd.isna(v) else fmt.format(v) for v in table[c]]
    if "sign" in text:
        text["sign"] = text["sign"].replace({"-": "−"})

    def _colour(col: pd.Series):
        return [SIGN_STYLES.get(str(v).replace("−", "-"), "") for v in col] if col.name == "sign" else [""] * len(col)
    return text.style.apply(_colour)
