"""Live dynamics chart titles fit a half-width panel: plotly never wraps a title and cuts it at the right edge
(seen in headless Chromium at a 1400 px viewport: ~480 px per chart in the page's two columns, which holds
~40 characters of the title font and ~65 of the smaller second line). The series name alone is the first line;
direction, band and smoothing go on the second."""
from __future__ import annotations

import re

import pandas as pd
import pytest

import tracer_core.api as api
import tracer_core.charts as charts


def _lines(title: str) -> list[str]:
    return [re.sub(r"<[^>]+>", "", part) for part in title.split("<br>")]


def _frame():
    return pd.DataFrame({"run_id": ["a"] * 4, "label": ["tracer"] * 4, "strategy": ["TRACER (WMA)"] * 4,
                         "teacher": ["wma"] * 4, "step": [1, 2, 3, 4], "value": [0.9, 0.5, 0.4, 0.2],
                         "smoothed": [0.9, 0.7, 0.5, 0.3]})


@pytest.mark.parametrize("name", [*api.TEACHER_PANELS, "loss", "lr"])
def test_live_titles_fit_a_half_width_panel(name):
    ctx = {"loss": "total", "lr": ""}.get(name, "combined")
    longest_smoothing = max((api.smoothing_text(k, v[4]) for k, v in api.SMOOTHING_KINDS.items()), key=len)
    series = charts.series_figure(_frame(), name, ctx, smoothing_label=longest_smoothing).layout
    band_data = _frame().rename(columns={"run_id": "group", "value": "center"}).assign(lo=0.1, hi=0.9, n=3)
    bands = [charts.band_figure(band_data, name, ctx, spread=s).layout for s in api.BAND_SPREADS]
    for lay in [series, *bands]:
        first, *rest = _lines(lay.title.text)
        assert first == charts.series_meta(name).label and len(first) <= 40, lay.title.text
        assert len(rest) <= 1 and all(len(r) <= 65 for r in rest), lay.title.text
        assert lay.margin.t >= 90 + 18 * len(rest)            # room for the second line above the legend
    assert "raw faint" in series.title.text and longest_smoothing in series.title.text


def test_eval_title_has_a_short_first_line():
    frame = _frame().assign(dataset="mnist")
    title = charts.eval_figure(frame, "accuracy", id_sets=["mnist"]).layout.title.text
    assert all(len(line) <= 65 for line in _lines(title)) and "ID = the fine-tuning distribution" in title
