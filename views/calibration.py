"""Calibration: reliability diagrams side by side, confidence histograms, the ECE table, and how they change
over the evaluation steps."""
import streamlit as st

import tracer_core.api as api
import tracer_core.charts as charts

svc: api.Services = st.session_state["svc"]
st.title("Calibration")
st.caption("How well confidence matches accuracy. Every evaluation records 10 equal-width confidence bins per "
           "eval set for the student (and, at the final evaluation, for the teacher).")

runs = api.analysis_runs(svc, "evaluations")
if runs.empty:
    st.info("No evaluations yet. Runs evaluate at step 0, every train.eval_every steps and at the end: start "
            "the demo on **Home** or a run on **Launch**, then come back here.")
    st.stop()

labels = api.run_choices(runs)
st.session_state["cal_runs"] = api.keep_valid(st.session_state.get("cal_runs"), labels, default=runs["run_id"].head(3))
selected = st.multiselect("Runs", list(labels), format_func=labels.get, key="cal_runs",
                          placeholder="Choose runs to compare", max_selections=8)
if not selected:
    st.info("Select one or more runs above to draw their reliability diagrams.")
    st.stop()

sets = api.eval_sets_of(svc, selected)
c = st.columns([2, 4, 2])
dataset = c[0].selectbox("Eval set", sets, key="cal_set", help="In-distribution (the runs' train set) first")
steps = api.calibration_steps(svc, selected, dataset)
if st.session_state.get("cal_step") not in steps:
    st.session_state.pop("cal_step", None)          # other runs or another set: start at the last step
if len(steps) > 1:
    step = c[1].select_slider("Evaluation step", steps, value=steps[-1], key="cal_step",
                              help="Each run shows its latest evaluation at or before this step")
else:
    step = steps[0] if steps else None
    c[1].caption(f"One evaluation (step {step}): runs with train.eval_every > 0 show calibration over training.")
teacher = c[2].toggle("Show teacher", value=True, key="cal_teacher",
                      help="Teachers are evaluated at the final step only")

rel = api.reliability_frame(svc, selected, dataset, step)
if not teacher:
    rel = rel[rel["model"] == "student"]
st.plotly_chart(charts.reliability_figure(rel, dataset), key="cal_reliability", width="stretch")
st.caption("Each point is one confidence bin at (mean confidence, accuracy); marker size grows with the bin's share "
           "of images. Below the diagonal: overconfident. The confidence = 1.0 bin is folded into [0.9, 1.0].")
if teacher and not rel.empty:
    has_teacher = api.has_teacher(runs.set_index("run_id").loc[selected, "teacher"])
    shown = set(rel.loc[rel["model"] == "teacher", "run_id"])
    missing = [labels[r] for r in has_teacher[has_teacher].index if r not in shown]
    if missing:
        st.caption(f"No teacher bins at this step for {api.md(', '.join(missing))}: move the slider to the final step.")
st.plotly_chart(charts.confidence_histogram_figure(rel, dataset), key="cal_hist", width="stretch")

st.subheader("Calibration metrics")
table = api.calibration_table(svc, selected, step)
if table.empty:
    st.info("No calibration metrics at this step.")
else:
    fmt = {c: st.column_config.NumberColumn(c, format="%.4f") for c in api.CAL_METRICS.values()}
    st.dataframe(table, hide_index=True, width="stretch", column_config=fmt, key="cal_table")
    st.caption("ECE: |accuracy − confidence| averaged over bins, weighted by bin size, on the whole set. Per-batch "
               "ECE (reference protocol): images sorted by class, ECE of each batch of 512, averaged weighted by batch "
               "size, as the reference code reports it (it differs from the global ECE). MCE: the largest bin gap. NLL in nats; Brier: squared error of the probability vector. "
               "Teacher rows exist where the teacher was evaluated (the final step).")

metric = st.segmented_control("Over training", list(api.CAL_METRICS)[1:], default="ece", key="cal_metric",
                              format_func=api.CAL_METRICS.get) or "ece"
trend, id_sets = api.calibration_trend(svc, selected, dataset, metric)
st.plotly_chart(charts.calibration_trend_figure(trend, metric, dataset, step, id_sets), key="cal_trend",
                width="stretch")
