"""Attribution figures: heat overlays per method and model on the input image."""
from __future__ import annotations

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from .common import empty_figure, layout, plain

# heat overlay: transparent at 0 (the image shows through), opaque hot colours where attribution is high
HEAT = [[0.0, "rgba(0,0,0,0)"], [0.15, "rgba(40,11,84,0.05)"], [0.35, "rgba(101,21,110,0.45)"],
        [0.55, "rgba(188,55,84,0.7)"], [0.75, "rgba(237,105,37,0.85)"], [1.0, "rgba(252,255,164,0.95)"]]


def attribution_figure(result, cell: int = 230) -> go.Figure:
    """Heat overlays: a row per method, a column per model (pretrained, student, teacher); the input image
    under each map. ``result``: api.AttributionResult."""
    roles, methods = list(result.roles), list(result.methods)
    title = (f"Attributions for class “{plain(result.classnames[result.target])}” "
             f"(true label: {plain(result.classnames[result.label])})")
    if not roles or not methods:
        return empty_figure(title, "Choose at least one method.", "x (pixels)", "y (pixels)")
    titles = [f"{result.role_labels[r]} · {result.method_labels.get(m, m)}" for m in methods for r in roles]
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
    layout(fig, title, "x (pixels)", "y (pixels)", height=cell * len(methods) + 110)
    fig.update_xaxes(showticklabels=False, showgrid=False, zeroline=False, title_text="")
    fig.update_yaxes(showticklabels=False, showgrid=False, zeroline=False, autorange="reversed", title_text="")
    fig.update_xaxes(title_text="x (pixels)", row=len(methods), col=1)
    fig.update_yaxes(title_text="y (pixels)", row=len(methods), col=1)
    fig.update_layout(hovermode="closest", showlegend=False, margin=dict(t=90, l=40))
    fig.update_annotations(font_size=12)
    return fig
