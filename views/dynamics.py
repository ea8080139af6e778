"""Live dynamics: runs overlaid by strategy, refreshed in a fragment while any of them trains."""
import pandas as pd
import streamlit as st

import tracer_core.api as api
import tracer_core.charts as charts

svc: api.Services = st.session_state["svc"]
st.title("Training dynamics")
try:        # the demo's outcome in one sentence from its stored results (None until its runs have finished)
    outcome = api.demo_outcome(svc)
except Exception:
    outcome = None
if outcome:
    st.markdown(f"**Outcome of the last demo:** {api.md(outcome)}")

api.see_runs(svc, st.session_state.get("dynamics_runs"))     # runs the demo / Launch / Runs just queued
runs = api.runs_table(svc, with_results=False)
if runs.empty:
    st.info("No runs yet. Start the one-click demo on **Home** or queue a run on **Launch**; "
            "its curves appear here while it trains.")
    st.page_link("views/home.py", label="Go to the demo", icon="🏠")
    st.stop()

labels = api.run_choices(runs, with_status=True)
handoff = st.session_state.pop("dynamics_runs", None)   # hand-off from Home / Launch / Runs
st.session_state["dyn_runs"] = api.keep_valid(handoff if handoff is not None else st.session_state.get("dyn_runs"),
                                              labels, default=runs["run_id"].head(3))
selected = st.multiselect("Runs", list(labels), format_func=labels.get, key="dyn_runs",
                          placeholder="Choose runs to compare")

c = st.columns([3, 2, 2, 2])
context = c[0].radio("Direction", ["combined", "img", "text"], horizontal=True, key="dyn_context",
                     format_func={"combined": "mean of both", "img": "image→text", "text": "text→image"}.get,
                     help="Teacher statistics per direction; top-5 alignment is per direction only")
kinds = api.SMOOTHING_KINDS
kind = c[1].selectbox("Smoothing", list(kinds), format_func=lambda k: kinds[k][0], key="dyn_smooth_kind",
                      help="Computed by the store on each full logged series (not on the points shown), so the "
                           "curve does not depend on the zoom or the number of points; raw series stay faint")
_, p_label, p_lo, p_hi, p_default, p_step = kinds[kind]
param = c[2].slider(p_label, 0.0, 0.99, p_default, 0.01, key="dyn_smoothing") if kind == "ema" else \
    c[2].number_input(p_label, p_lo, p_hi, p_default, p_step, key=f"dyn_smooth_{kind}") if kind != "off" else 0.0
smoothing, smoothing_text = api.smoothing_spec(kind, param), api.smoothing_text(kind, param)
loss_terms = api.series_options(svc, selected)
loss_terms = sorted(loss_terms.loc[loss_terms["name"] == "loss", "context"].tolist()) or ["total"]
loss_ctx = c[3].selectbox("Loss term", loss_terms, index=loss_terms.index("total") if "total" in loss_terms else 0,
                          key="dyn_loss")
c = st.columns([2, 2, 2, 2, 2, 1])
log_y = c[0].toggle("Log scale (all charts)", value=False, key="dyn_log",
                    help="Off: each series uses its default scale (KL is logarithmic)")
grouped = c[1].toggle("Seed groups as bands", value=False, key="dyn_groups",
                      help="Runs that differ only in the seed: one line and a band, runs interpolated onto one grid")
center, spread = "mean", "std"
if grouped:
    center = c[2].radio("Band line", list(api.BAND_CENTERS), horizontal=True, key="dyn_band_center")
    spread = c[3].selectbox("Band", list(api.BAND_SPREADS), format_func=api.BAND_SPREADS.get, key="dyn_band_spread",
                            help="std: sample std over seeds; standard error: std/√n; 95 % CI: t-interval of "
                                 "the mean; min–max: range over seeds")


with st.expander("Zoom: step range (re-queried at full resolution)",
                 expanded=st.session_state.get("dyn_zoom_lo") is not None
                 or st.session_state.get("dyn_zoom_hi") is not None):
    z = st.columns([2, 2, 1])
    zoom_lo = z[0].number_input("From step", min_value=0, value=None, step=1, key="dyn_zoom_lo",
                                placeholder="first step")
    zoom_hi = z[1].number_input("To step", min_value=0, value=None, step=1, key="dyn_zoom_hi",
                                placeholder="last step")
    z[2].button("Full range", key="dyn_zoom_reset",
                on_click=lambda: st.session_state.update(dyn_zoom_lo=None, dyn_zoom_hi=None))
    first, last = api.step_bounds(svc, selected)
    st.caption(f"Logged steps of the selected runs: {first}–{last}. Within the range each run shows every logged "
               "point when they fit (600 per chart), else min/max per bucket of one grid shared by all runs. "
               "Plotly's own drag-zoom only magnifies the points already drawn (its zoom events cannot be read back "
               "from st.plotly_chart reliably), hence this control.")
step_range, zoom_text, zoom_problem = api.zoom_range(zoom_lo, zoom_hi)
if zoom_problem:
    st.warning(zoom_problem)

if not selected:
    st.info("Select one or more runs above to draw their curves.")
    st.stop()

chosen = runs[runs["run_id"].isin(selected)]
active = bool(chosen["status"].isin(["queued", "running"]).any())
waiting = active and not (chosen["steps_done"].fillna(0) > 0).any()   # poll faster until the first points land
every = (1 if waiting else 2) if active else None
panels = [(n, "img" if n == "teacher_student_top5_alignment" and context == "combined" else context)
          for n in api.TEACHER_PANELS] + [("loss", loss_ctx), ("lr", "")]


def progress_ui(live) -> None:
    order = live["status"].map({"running": 0, "queued": 1}).fillna(2)
    for _, r in live.assign(order=order).sort_values(["order", "created", "run_id"]).iterrows():   # queue order
        if r["status"] == "running":
            eta = f", about {r['eta_s']:.0f} s left" if pd.notna(r["eta_s"]) else ""
            done = 0 if pd.isna(r["steps_done"]) else int(r["steps_done"])
            st.progress(0.0 if pd.isna(r["progress"]) else float(r["progress"]),
                        text=f"{api.md(r['label'])}: step {done} / {int(r['total'] or 0)}{eta}")
        elif r["status"] == "queued":
            st.progress(0.0, text=f"{api.md(r['label'])}: queued")
        elif r["status"] in ("failed", "interrupted"):
            st.warning(f"{api.md(r['label'])} {r['status']}: {api.md(r['error'] or 'no message')}")


def panel_ui(frames, name, ctx) -> None:
    frame = frames[(name, ctx)]
    if grouped:
        band = api.band_frame(svc, selected, name, ctx, center=center, spread=spread, smoothing=smoothing,
                              step_range=step_range)
        if not band.empty:
            st.plotly_chart(charts.band_figure(band, name, ctx, center=center, spread=spread, log_y=log_y or None),
                            key=f"dyn_chart_band_{name}", width="stretch")
            return
    if frame.empty:
        teacherless = name.startswith("teacher") and not api.has_teacher(
            runs.loc[runs["run_id"].isin(selected), "teacher"]).any()
        kinds = [api.TEACHER_LABELS[k] for k in api.TEACHER_KINDS if k != "none"]
        msg = (f"needs a run with a teacher ({', '.join(kinds[:-1])} or {kinds[-1]})." if teacherless
               else "no points logged yet.")
        st.info(f"**{charts.series_label(name, ctx)}**: {msg}")
        return
    st.plotly_chart(charts.series_figure(frame, name, ctx, log_y=log_y or None,
                                         smoothing_label=smoothing_text),
                    key=f"dyn_chart_{name}", width="stretch")


@st.fragment(run_every=every)
def live_view() -> None:
    try:
        live = api.runs_table(svc, run_ids=selected, with_results=False)
        with st.container():     # one block: a changing number of progress rows never shifts the charts below
            progress_ui(live)
        frames = api.live_frames(svc, selected, panels, smoothing=smoothing, step_range=step_range)
        n_points = int(frames[panels[0]].shape[0])
        st.caption(f"{f'Live: refreshing every {every} s' if active else 'Finished runs'} · "
                   f"{n_points} points in the KL chart{zoom_text} · steps up to "
                   f"{0 if live.empty else int(live['steps_done'].fillna(0).max())}")
        for i in range(0, len(panels), 2):
            cols = st.columns(2)
            for col, (name, ctx) in zip(cols, panels[i:i + 2]):
                with col:
                    panel_ui(frames, name, ctx)
        ev, id_sets = api.eval_frame(svc, selected, "accuracy")
        st.plotly_chart(charts.eval_figure(ev, "accuracy", id_sets=id_sets), key="dyn_chart_eval", width="stretch")
        st.subheader("Summary")
        table, directions = api.summary_table(svc, selected)
        st.dataframe(charts.style_best(table, directions), width="stretch")
        st.caption("KL statistics are on KL(teacher‖student), image↔text mean, raw (unsmoothed) series: AUC is the "
                   "time-averaged gap, half-life the first step where it falls to half its first value (– = never). "
                   "Green: best accuracy / lowest ECE.")
        finished = active and not live["status"].isin(["queued", "running"]).any()
        if finished or (waiting and (live["steps_done"].fillna(0) > 0).any()):
            st.rerun(scope="app")   # auto-refresh off when finished; back to every 2 s once points arrive
    except Exception as e:  # a fragment rerun bypasses app.py's guard: a message, never a traceback
        st.error(f"Could not draw the runs: {type(e).__name__}: {api.md(e)}")


live_view()
