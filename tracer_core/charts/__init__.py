"""DataFrame -> plotly figure builders for the dashboard pages (no streamlit, no torch, no duckdb, no api).

One module per page family, shared pieces underneath:

    common.py           smoothing, labels and units (store schema), strategy colours (teacher registry),
                        the shared layout, empty figures, panel grids
    live.py             Live dynamics: series, seed bands, evaluations
    kernel.py           Teacher kernel explorer
    runs.py             Runs page: best-value table styling, the HTML report page
    calibration.py      reliability diagrams, confidence histograms, metric trend
    representations.py  CKA / SVCCA heatmaps and per-layer curves
    attributions.py     attribution overlays
    robustness.py       attack bars, WiSE-FT curve
    frontier.py         the ID–OOD plane (runs, seed means, zero-shot, frontier)

Every builder returns a figure with a title, axis titles (with units) and a legend; an empty frame gives a
figure that says why it is empty instead of blank axes (pages normally show ``st.info`` before that).
Pages call ``charts.<builder>``; the names below are the public surface.
"""
from __future__ import annotations

from .attributions import attribution_figure
from .calibration import calibration_trend_figure, confidence_histogram_figure, reliability_figure
from .common import (CONTEXT_LABELS, STEP_AXIS, axis_title, empty_figure, eval_metric_meta, plain, series_label,
                     series_meta, smooth, strategy_colours)
from .frontier import frontier_figure, sign_style
from .kernel import kernel_weights_figure, profile_figure
from .live import band_figure, eval_figure, series_figure
from .representations import similarity_heatmap_figure, similarity_layers_figure
from .robustness import robustness_figure, wise_alpha_figure, wise_figure
from .runs import html_page, style_best

__all__ = ["CONTEXT_LABELS", "STEP_AXIS", "attribution_figure", "axis_title", "band_figure",
           "calibration_trend_figure", "confidence_histogram_figure", "empty_figure", "eval_figure", "plain",
           "eval_metric_meta", "frontier_figure", "html_page", "kernel_weights_figure", "profile_figure", "reliability_figure",
           "robustness_figure", "series_figure", "series_label", "series_meta", "sign_style", "similarity_heatmap_figure",
           "similarity_layers_figure", "smooth", "strategy_colours", "style_best", "wise_alpha_figure",
           "wise_figure"]
