"""Figure builders of the analysis pages: reliability diagrams, CKA heatmaps, attribution overlays,
robustness bars and the WiSE-FT curve. Re-exported by :mod:`tracer_core.charts` (pages call
``charts.reliability_figure(...)``); same conventions: title, axis titles with units, legend, and a figure
that says why it is empty instead of blank axes.
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

__all__ = ["reliability_figure", "confidence_histogram_figure", "calibration_trend_figure", "similarity_heatmap_figure",
           "similarity_layers_figure", "attribution_figure", "robustness_figure", "wise_figure", "wise_alpha_figure"]

CONF_AXIS = "Confidence (max softmax probability, 0–1)"
ACC_AXIS = "Accuracy (fraction correct)"
KIND_LABELS = {"linear_cka": "Linear CKA", "linear_cka_debiased": "Debiased linear CKA", "svcca": "SVCCA"}
PAIR_LABELS = {"student_vs_pretrained": "student vs pretrained", "student_vs_teacher": "student vs teacher",
               "teacher_vs_pretrained": "teacher vs pretrained"}
PAIR_COLOURS = {"student_vs_pretrained": "#6b6b6b", "student_vs_teacher": "#8e44ad",
                "teacher_vs_pretrained": "#16a085"}
# model roles: not the strategy colours (EMA orange, WMA blue), which mark runs elsewhere in the app
ROLE_COLOURS = {"pretrained": "#6b6b6b", "student": "#2c3e50", "teacher": "#8e44ad"}
ATTACK_COLOURS = {"clean": "#2e9e5b", "FGSM": "#f29e4c", "PGD": "#b23a1b"}
_MAX_COLS = 4
# heat overlay: transparent at 0 (the image shows through), opaque hot colours where attribution is high
HEAT = [[0.0, "rgba(0,0,0,0)"], [0.15, "rgba(40,11,84,0.05)"], [0.35, "rgba(101,21,110,0.45)"],
        [0.55, "rgba(188,55,84,0.7)"], [0.75, "rgba(237,105,37,0.85)"], [1.0, "rgba(252,255,164,0.95)"]]


def _c():
    from tracer_core import charts   # lazy: charts re-exports this module
    return charts


def _grid(n: int) -> tuple[int, int]:
    cols = min(max(n, 1), _MAX_COLS)
    return math.ceil(max(n, 1) / cols), cols


def _run_panels(frame: pd.DataFrame) -> list[tuple[str, pd.DataFrame]]:
    return [(rid, g) for rid, g in frame.groupby("run_id", sort=False)]


def _finish(fig: go.Figure, title: str, x_title: str, y_title: str, rows: int, cols: int, *, height: int,
            legend: str) -> go.Figure:
    _c()._layout(fig, title, x_title, y_title, height=height)
    for r in range(1, rows + 1):
        for col in range(1, cols + 1):
            fig.update_xaxes(title_text=x_title if r == rows else "", row=r, col=col)
            fig.update_yaxes(title_text=y_title if col == 1 else "", row=r, col=col)
    fig.update_layout(hovermode="closest", legend_title_text=legend, margin=dict(t=120), legend=dict(y=1.1))
    fig.update_annotations(font_size=12)
    return fig


# -- calibration -------------------------------------------------------------------------------------------------

def reliability_figure(frame: pd.DataFrame, dataset: str = "", height: int = 420) -> go.Figure:
    """Reliability diagrams side by side (a panel per run): accuracy against mean confidence per confidence bin,
    student solid, teacher dashed, with the diagonal of perfect calibration. ``frame``: reliability_frame."""
    title = f"Reliability diagram — {dataset}" if dataset else "Reliability diagram"
    if frame.empty:
        return _c().empty_figure(title, "No reliability bins for these runs and this eval set.", CONF_AXIS, ACC_AXIS)
    panels = _run_panels(frame)
    rows, cols = _grid(len(panels))
    names = [f"{g['label'].iloc[0]} · step {int(g['step'].iloc[0])}" for _, g in panels]
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
    return _finish(fig, title, CONF_AXIS, ACC_AXIS, rows, cols, height=height * rows, legend="model")


def confidence_histogram_figure(frame: pd.DataFrame, dataset: str = "", height: int = 300) -> go.Figure:
    """Images per confidence bin (a panel per run; student and teacher side by side)."""
    title = f"Images per confidence bin — {dataset}" if dataset else "Images per confidence bin"
    y_title = "Images in bin (count)"
    if frame.empty:
        return _c().empty_figure(title, "No reliability bins for these runs and this eval set.", CONF_AXIS, y_title)
    panels = _run_panels(frame)
    rows, cols = _grid(len(panels))
    fig = make_subplots(rows=rows, cols=cols, shared_yaxes=True, horizontal_spacing=0.04, vertical_spacing=0.2,
                        subplot_titles=[str(g["label"].iloc[0]) for _, g in panels])
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
    return _finish(fig, title, CONF_AXIS, y_title, rows, cols, height=height * rows, legend="model")


def calibration_trend_figure(frame: pd.DataFrame, metric: str, dataset: str, step: int | None = None,
                             id_sets: Sequence[str] = ()) -> go.Figure:
    """A student calibration metric of one eval set over training, the step shown above marked."""
    meta = _c().eval_metric_meta(metric)
    fig = _c().eval_figure(frame, metric, id_sets=id_sets, title=f"Student {meta.label} on {dataset} over training",
                           height=320)
    if step is not None and not frame.empty:
        fig.add_vline(x=step, line_dash="dot", line_color="#888888")
    return fig


# -- representation similarity ---------------------------------------------------------------------------------

def similarity_heatmap_figure(frame: pd.DataFrame, pair: str, kind: str = "linear_cka", tower: str = "vision",
                              height: int = 380) -> go.Figure:
    """Layer × evaluation step heatmaps of one comparison, a panel per run, on one shared colour scale."""
    k = KIND_LABELS.get(kind, kind)
    title = f"{k} per layer over training — {PAIR_LABELS.get(pair, pair)} ({tower} tower)"
    y_title = "Layer (input → output)"
    sub = frame[frame["pair"] == pair] if not frame.empty else frame
    if frame.empty:
        return _c().empty_figure(title, "No similarity rows for these runs.", _c().STEP_AXIS, y_title)
    panels = _run_panels(frame)
    fig = make_subplots(rows=1, cols=len(panels), shared_yaxes=True, horizontal_spacing=0.03,
                        subplot_titles=[f"{g['label'].iloc[0]} ({g['strategy'].iloc[0]})" for _, g in panels])
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
            fig.add_trace(go.Heatmap(z=[[None]], x=[0], y=[layers[0]], showscale=False, name=str(g["label"].iloc[0]),
                                     hoverinfo="skip"), row=1, col=i)
            continue
        piv = h.pivot_table(index="layer_index", columns="step", values="value").sort_index()
        fig.add_trace(go.Heatmap(
            z=piv.to_numpy().tolist(), x=[int(s) for s in piv.columns], y=[layers[j] for j in piv.index],
            zmin=zmin, zmax=zmax, colorscale="Viridis", name=str(g["label"].iloc[0]), meta={"run_id": str(rid)},
            showscale=i == 1, colorbar=dict(title=dict(text=f"{k} (0–1)", side="right")),
            hovertemplate="step %{x}<br>%{y}<br>" + k + " %{z:.4f}<extra>" + str(g["label"].iloc[0]) + "</extra>"),
            row=1, col=i)
    _finish(fig, title, "Evaluation step (optimizer updates)", y_title, 1, len(panels), height=height, legend="run")
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
        return _c().empty_figure(title, f"No similarity rows at step {step}.", x_title, y_title)
    panels = _run_panels(at)
    fig = make_subplots(rows=1, cols=len(panels), shared_yaxes=True, horizontal_spacing=0.03,
                        subplot_titles=[f"{g['label'].iloc[0]} ({g['strategy'].iloc[0]})" for _, g in panels])
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
    return _finish(fig, title, x_title, y_title, 1, len(panels), height=height, legend="comparison")


# -- attributions -------------------------------------------------------------------------------------------------

def attribution_figure(result, cell: int = 230) -> go.Figure:
    """Heat overlays: a row per method, a column per model (pretrained, student, teacher); the input image
    under each map. ``result``: api.AttributionResult."""
    from tracer_core.api_analysis import ATTR_METHODS
    roles, methods = list(result.roles), list(result.methods)
    title = (f"Attributions for class “{result.classnames[result.target]}” "
             f"(true label: {result.classnames[result.label]})")
    if not roles or not methods:
        return _c().empty_figure(title, "Choose at least one method.", "x (pixels)", "y (pixels)")
    titles = [f"{result.role_labels[r]} · {ATTR_METHODS.get(m, m)}" for m in methods for r in roles]
    fig = make_subplots(rows=len(methods), cols=len(roles), subplot_titles=titles, horizontal_spacing=0.02,
                        vertical_spacing=0.06)
    img = result.image.tolist()
    for i, m in enumerate(methods, start=1):
        for j, r in enumerate(roles, start=1):
            fig.add_trace(go.Image(z=img, name="input", hoverinfo="skip"), row=i, col=j)
            fig.add_trace(go.Heatmap(z=result.maps[(r, m)].tolist(), zmin=0, zmax=1, colorscale=HEAT,
                                     name=f"{result.role_labels[r]} · {m}",
                                     meta={"role": r, "method": m}, showscale=i == 1 and j == 1,
                                     colorbar=dict(title=dict(text="|attribution| (normalised, 0–1)", side="right")),
                                     hovertemplate="x %{x}, y %{y}<br>attribution %{z:.2f}<extra></extra>"),
                          row=i, col=j)
    _c()._layout(fig, title, "x (pixels)", "y (pixels)", height=cell * len(methods) + 110)
    fig.update_xaxes(showticklabels=False, showgrid=False, zeroline=False, title_text="")
    fig.update_yaxes(showticklabels=False, showgrid=False, zeroline=False, autorange="reversed", title_text="")
    fig.update_xaxes(title_text="x (pixels)", row=len(methods), col=1)
    fig.update_yaxes(title_text="y (pixels)", row=len(methods), col=1)
    fig.update_layout(hovermode="closest", showlegend=False, margin=dict(t=90, l=40))
    fig.update_annotations(font_size=12)
    return fig


# -- robustness and WiSE-FT -----------------------------------------------------------------------------------------

def robustness_figure(table: pd.DataFrame, dataset: str = "", steps: int | None = None) -> go.Figure:
    """Grouped bars: clean / FGSM / PGD zero-shot accuracy per model. ``table``: api.robustness_table."""
    title = "Accuracy under L∞ attacks" + (f" — {dataset}" if dataset else "")
    if table.empty:
        return _c().empty_figure(title, "Press the button to run the attacks.", "Model", ACC_AXIS)
    eps, n = float(table["eps"].iloc[0]), int(table["n"].iloc[0])
    fig = go.Figure()
    for attack, g in table.groupby("attack", sort=False):
        label = "clean" if attack == "clean" else (f"{attack} ({steps} steps)" if attack == "PGD" and steps else attack)
        fig.add_trace(go.Bar(x=g["model"].tolist(), y=g["accuracy"].tolist(), name=label,
                             marker_color=ATTACK_COLOURS.get(attack, "#8e44ad"), textposition="outside",
                             text=[f"{v:.2f}" for v in g["accuracy"]], meta={"attack": str(attack)},
                             hovertemplate="%{x}<br>" + label + " accuracy %{y:.3f}<extra></extra>"))
    _c()._layout(fig, f"{title} (ε = {eps * 255:.3g}/255, n = {n} images)", "Model", ACC_AXIS, height=380)
    fig.update_yaxes(range=[0, 1.1])
    fig.update_layout(barmode="group", hovermode="closest", legend_title_text="attack")
    return fig


def wise_figure(summary: pd.DataFrame, id_set: str = "", ood_sets: Sequence[str] = ()) -> go.Figure:
    """WiSE-FT: OOD against ID accuracy of θ_α for each α, labelled, with the two endpoints marked."""
    title = "WiSE-FT: weight-space interpolation between pretrained (α = 0) and fine-tuned (α = 1)"
    x_title = f"ID accuracy{f' on {id_set}' if id_set else ''} (fraction correct)"
    y_title = (f"OOD accuracy{f' on {ood_sets[0]}' if len(ood_sets) == 1 else f', mean of {len(ood_sets)} sets'}"
               " (fraction correct)")
    if summary.empty or not summary["ood_accuracy"].notna().any():
        msg = ("Press the button to compute the curve." if summary.empty else
               "This run has no OOD eval set: choose at least one to draw ID against OOD accuracy.")
        return _c().empty_figure(title, msg, x_title, y_title)
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
        title += f"<br><sup>OOD = mean of {', '.join(ood_sets)}</sup>"
    _c()._layout(fig, title, x_title, y_title, height=460)
    fig.update_layout(hovermode="closest", legend_title_text="model", margin=dict(t=110))
    return fig


def wise_alpha_figure(rows: pd.DataFrame) -> go.Figure:
    """Accuracy of θ_α on every eval set against α (ID solid, OOD dashed)."""
    title, x_title = "WiSE-FT: accuracy per eval set against α", "α (weight of the fine-tuned model, 0–1)"
    if rows.empty:
        return _c().empty_figure(title, "Press the button to compute the curve.", x_title, ACC_AXIS)
    fig = go.Figure()
    palette = ["#1f5fbf", "#e4572e", "#2e9e5b", "#8e44ad", "#16a085", "#d35400", "#2c3e50"]
    for i, (ds, g) in enumerate(rows.sort_values("alpha").groupby("dataset", sort=False)):
        split = str(g["split"].iloc[0]).upper()
        fig.add_trace(go.Scatter(x=g["alpha"].tolist(), y=g["accuracy"].tolist(), mode="lines+markers",
                                 name=f"{ds} ({split})", line=dict(color=palette[i % len(palette)], width=2,
                                                                   dash="solid" if split == "ID" else "dash"),
                                 hovertemplate=f"{ds}<br>α %{{x:g}}<br>accuracy %{{y:.3f}}<extra></extra>"))
    _c()._layout(fig, title, x_title, ACC_AXIS, height=380)
    fig.update_layout(hovermode="closest", legend_title_text="eval set")
    return fig
