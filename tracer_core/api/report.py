"""The HTML report of the Runs page: the live panels, evaluations, summary and config diff on one page."""
from __future__ import annotations

from tracer_core.lazy import lazy

from typing import Sequence

pd = lazy("pandas")

from .common import Services
from .live import TEACHER_PANELS, eval_frame, live_frames
from .runs import config_diff, summary_table


def html_report(services: Services, run_ids: Sequence[str], context: str = "combined") -> str:
    """A self-contained HTML page (plotly.js inlined once) comparing the runs: charts + tables."""
    from tracer_core import charts   # plotly on first use: `import tracer_core.api` (and Home) do without it
    run_ids = list(run_ids)
    table, _ = summary_table(services, run_ids)
    panels = [(n, context if n != "teacher_student_top5_alignment" else "img") for n in TEACHER_PANELS]
    panels += [("loss", "total"), ("lr", "")]
    frames = live_frames(services, run_ids, panels)
    figs = [charts.series_figure(frames[p], *p) for p in panels if not frames[p].empty]
    ev, id_sets = eval_frame(services, run_ids)
    if not ev.empty:
        figs.append(charts.eval_figure(ev, "accuracy", id_sets=id_sets))
    diff = config_diff(services, run_ids) if len(run_ids) > 1 else pd.DataFrame()
    return charts.html_page("TRACER Studio comparison", f"{len(run_ids)} runs: {', '.join(run_ids)}",
                            {"Summary": table, "Config differences (diff only)": diff}, figs)
