"""The HTML report of the Runs page: the live panels, evaluations, summary and config diff on one page."""
from __future__ import annotations

from tracer_core.lazy import lazy

from typing import Sequence

pd = lazy("pandas")

from .common import Services
from .frontier import er_display, er_tables, known_wise, line_frontier, ood_choices, plane_points, zero_shot_point
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
    plane = _plane_section(services, run_ids)
    return charts.html_page("TRACER Studio comparison", f"{len(run_ids)} runs: {', '.join(run_ids)}",
                            {"Summary": table, "Config differences (diff only)": diff}, figs,
                            sections={"ID vs OOD: effective robustness": plane} if plane else None)


def _plane_section(services: Services, run_ids: Sequence[str]):
    """(note, ID–OOD figure, ER table in points) of the runs, or None when none has ID + OOD numbers. Frontier:
    a WiSE-FT curve computed in this server for one of the runs, else the zero-shot–FT line (latest FT run)."""
    from tracer_core import charts
    pts = plane_points(services, run_ids)
    if pts.empty:
        return None
    id_name = pts["id_set"].value_counts().index[0]
    pts = pts[pts["id_set"] == id_name].reset_index(drop=True)
    sets = [s for s in ood_choices(pts) if pts[s].notna().any()]
    zs = zero_shot_point(services, id_name, ood_sets=sets)
    curve, label = None, "no frontier"
    for rid, lab in zip(pts["run_id"], pts["label"]):
        if (c := known_wise(rid, sets)) is not None:
            curve, label = c, f"WiSE-FT frontier of {lab}"
            break
    ft = pts[pts["method"] == "ft"]
    if curve is None and zs is not None and not ft.empty:
        curve, label = line_frontier(zs, ft.iloc[0]), f"zero-shot–FT line to {ft.iloc[0]['label']} (α = 0 and 1 only)"
    per, groups = er_tables(pts, curve) if curve is not None else (pd.DataFrame(), pd.DataFrame())
    fig = charts.frontier_figure(pts, groups, zs, curve, id_name, "mean of " + ", ".join(sets), label)
    note = (f"OOD = mean of {', '.join(sets)}; effective robustness (ER, points) = OOD minus the {label} at the "
            "run's ID accuracy; n/a outside the frontier's ID range ('ER extended' then extends its end segment: "
            "an estimate)." if curve is not None else
            "No frontier: store a zero-shot evaluation and an FT run, or compute a WiSE-FT curve on the ID vs OOD page.")
    table = pd.DataFrame() if per.empty else er_display(per, minus_sign=True)
    return note, fig, table
