"""Representations: per-layer CKA / debiased CKA / SVCCA between student, teacher and pretrained model over
training, EMA- and WMA-teacher runs side by side (the paper's CKA figure)."""
import streamlit as st

import tracer_core.api as api
import tracer_core.charts as charts

svc: api.Services = st.session_state["svc"]
st.title("Representations")
st.caption("At every evaluation, runs compare the student's (and teacher's) per-layer features on a fixed probe batch "
           "of ID images and their prompts with the pretrained model's (train.similarity_probe images). "
           "1 = the same representation up to rotation and scale.")

runs = api.analysis_runs(svc, "similarities")
if runs.empty:
    st.info("No representation similarities yet. Runs record them at every evaluation when "
            "train.similarity_probe > 0 (the default): start a run on **Launch** or the demo on **Home**.")
    st.stop()

labels = api.run_choices(runs)
# default: the latest EMA-teacher and WMA-teacher runs, side by side
pick = api.default_comparison(runs)
st.session_state["rep_runs"] = api.keep_valid(st.session_state.get("rep_runs"), labels,
                                              default=pick or runs["run_id"].head(2).tolist())
selected = st.multiselect("Runs (one panel each)", list(labels), format_func=labels.get, key="rep_runs",
                          max_selections=4, placeholder="Choose runs, e.g. an EMA- and a WMA-teacher run")
if not selected:
    st.info("Select one or more runs above.")
    st.stop()

c = st.columns([2, 3, 3])
tower = c[0].radio("Tower", ["vision", "text"], horizontal=True, key="rep_tower",
                   format_func={"vision": "image (vision)", "text": "text"}.get)
kind = c[1].segmented_control("Measure", list(api.SIM_KINDS), default="linear_cka", key="rep_kind",
                              format_func=api.SIM_KINDS.get,
                              help="Debiased CKA corrects the finite-probe bias; SVCCA: mean canonical "
                                   "correlation of the top singular directions") or "linear_cka"
pair = c[2].selectbox("Heatmap comparison", list(api.SIM_PAIRS), format_func=api.SIM_PAIRS.get, key="rep_pair",
                      help="The teacher comparisons need a run with a teacher")

frame = api.similarity_frame(svc, selected, tower, kind)
if frame.empty:
    st.info(f"The selected runs have no {api.SIM_KINDS[kind]} rows for the {tower} tower.")
    st.stop()
if "teacher" in pair and not frame["pair"].eq(pair).any():
    st.info("None of the selected runs has a teacher, so there is no teacher comparison: choose "
            "**student vs pretrained**, or add a TRACER run (EMA or WMA teacher).")
st.plotly_chart(charts.similarity_heatmap_figure(frame, pair, kind, tower), key="rep_heatmap", width="stretch")

steps = sorted(int(s) for s in frame["step"].unique())
if st.session_state.get("rep_step") not in steps:
    st.session_state.pop("rep_step", None)
step = (st.select_slider("Evaluation step for the per-layer curves", steps, value=steps[-1], key="rep_step")
        if len(steps) > 1 else steps[0])
st.plotly_chart(charts.similarity_layers_figure(frame, step, kind, tower), key="rep_layers", width="stretch")
st.caption("What to look for: an EMA teacher collapses onto the student (student-vs-teacher similarity stays "
           "near 1, and the teacher drifts from the pretrained model as fast as the student). A WMA teacher keeps "
           "early snapshots: it stays closer to the pretrained model than the student does.")

with st.expander("Values at this step"):
    at = frame[frame["step"] == step].pivot_table(index=["label", "layer_index", "layer"], columns="pair",
                                                 values="value").reset_index(level="layer_index", drop=True)
    st.dataframe(at.rename(columns=api.SIM_PAIRS), width="stretch", key="rep_values")
