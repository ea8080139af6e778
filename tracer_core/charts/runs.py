"""Runs page and report: the key-results table styling and the self-contained HTML report."""
from __future__ import annotations

import html
from typing import Iterable, Mapping

import pandas as pd
import plotly.graph_objects as go


def html_page(title: str, intro: str, tables: Mapping[str, pd.DataFrame], figures: Iterable[go.Figure],
              sections: Mapping[str, tuple[str, go.Figure | None, pd.DataFrame]] | None = None) -> str:
    """A self-contained HTML page: plotly.js inlined once, then the tables, the ``sections`` (heading ->
    (note, figure or None, table)) and the interactive charts. All text is HTML-escaped."""
    def esc(s) -> str:
        return html.escape(str(s))
    sections = dict(sections or {})
    all_figs = [f for _, f, _ in sections.values() if f is not None] + list(figures)
    html_figs = [f.to_html(full_html=False, include_plotlyjs="inline" if i == 0 else False)
                 for i, f in enumerate(all_figs)]
    n_sec = sum(f is not None for _, f, _ in sections.values())
    sec_figs, figs = iter(html_figs[:n_sec]), html_figs[n_sec:]
    body = [f"<h1>{esc(title)}</h1><p>{esc(intro)}</p>"]
    for heading, table in tables.items():
        body.append(f"<h2>{esc(heading)}</h2>")
        body.append(table.to_html(float_format=lambda v: f"{v:.4g}", na_rep="–") if not table.empty
                    else "<p>Nothing to show.</p>")
    for heading, (note, fig, table) in sections.items():
        body += [f"<h2>{esc(heading)}</h2>", f"<p>{esc(note)}</p>"]
        body += [next(sec_figs)] if fig is not None else []
        body.append(table.to_html(float_format=lambda v: f"{v:.4g}", na_rep="–") if not table.empty
                    else "<p>Nothing to show.</p>")
    body += ["<h2>Training dynamics</h2>", *(figs or ["<p>No series recorded yet.</p>"])]
    style = ("body{font-family:Inter,Segoe UI,Helvetica,Arial,sans-serif;margin:2em;color:#1c2333}"
             "table{border-collapse:collapse;font-size:13px}td,th{border:1px solid #ddd;padding:4px 8px}")
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{esc(title)}</title><style>{style}</style>"
            f"</head><body>{''.join(body)}</body></html>")


def style_best(table: pd.DataFrame, directions: Mapping[str, bool | None], fmt: str = "{:.4g}"):
    """A pandas Styler that highlights the best value of each column whose direction is known
    (``True``: higher is better, ``False``: lower is better). Numbers are pre-formatted as text, missing
    values as "–" (Streamlit would print NaN as "None")."""
    numeric = [c for c in table.columns if pd.api.types.is_numeric_dtype(table[c])]

    def _mark(col: pd.Series):
        hib = directions.get(col.name)
        values = pd.to_numeric(table[col.name], errors="coerce") if col.name in numeric else None
        if hib is None or values is None or values.notna().sum() < 2:
            return [""] * len(col)
        best = values.max() if hib else values.min()
        return ["background-color: #d7f0dd; font-weight: 600" if v == best else "" for v in values]

    text = table.copy()
    for c in numeric:
        text[c] = [("–" if pd.isna(v) else fmt.format(v)) for v in table[c]]
    return text.style.apply(_mark)
