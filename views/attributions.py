"""Attributions: which pixels drive one class's zero-shot score, for the pretrained model, the student and the
teacher of a run checkpoint side by side (Integrated Gradients, Saliency, Occlusion, Grad-CAM)."""
import streamlit as st

import tracer_core.api as api
import tracer_core.charts as charts

svc: api.Services = st.session_state["svc"]
st.title("Attributions")
st.caption("The attributed score is the zero-shot logit of the chosen class (image embedding · class prompt "
           "embedding). Computed on demand on the CPU for one image; results are cached per checkpoint.")

runs = api.analysis_runs(svc, "checkpoint")
if runs.empty:
    st.info(api.NO_CHECKPOINT)
    st.stop()


@st.cache_data(max_entries=64, show_spinner=False)
def set_info(path: str, dataset: str) -> dict:
    return api.eval_set_info(api.load_checkpoint_models(path), dataset)


@st.cache_data(max_entries=16, ttl=3600, show_spinner=False)   # bounded: maps are per image
def maps(path: str, dataset: str, index: int, target: int, methods: tuple, ig_steps: int):
    return api.attribution_maps(api.load_checkpoint_models(path), dataset, index, target, methods, ig_steps)


labels = api.run_choices(runs, with_status=True)
c = st.columns([3, 2])
run_id = c[0].selectbox("Run", list(labels), format_func=labels.get, key="attr_run")
ckpts = api.checkpoint_choices(svc, run_id)
path = c[1].selectbox("Checkpoint", list(ckpts), key="attr_ckpt", format_func=ckpts.get)
with st.spinner("Loading the checkpoint's models…"):         # api keeps the last two loaded for every page
    opened = api.open_checkpoint(path)
if opened.error:
    st.error(opened.error)
    st.stop()
cm = opened.models
if opened.note:
    st.caption(opened.note)

c = st.columns([2, 2, 3])
dataset = c[0].selectbox("Eval set", cm.eval_sets, key="attr_set", help="The run's evaluation sets, ID first")
info = set_info(path, dataset)
if not 0 <= st.session_state.get("attr_index", 0) < info["n"]:
    st.session_state.pop("attr_index")
if st.session_state.get("attr_class", -1) not in range(-1, len(info["classnames"])):
    st.session_state.pop("attr_class")
index = int(c[1].number_input(f"Image index (0–{info['n'] - 1})", 0, info["n"] - 1, 0, key="attr_index"))
true = info["labels"][index]
classes = [-1] + list(range(len(info["classnames"])))
target = c[2].selectbox("Class to explain", classes, key="attr_class",
                        help=f"Image {index} is a “{api.md(info['classnames'][true])}”", format_func=lambda k: "the image's true label" if k < 0 else f"{k}: {info['classnames'][k]}")
c = st.columns([4, 2, 2])
methods = c[0].multiselect("Methods", list(api.ATTR_METHODS), default=list(api.ATTR_METHODS), key="attr_methods",
                           format_func=api.ATTR_METHODS.get)
ig_steps = c[1].slider("IG steps", 4, 64, 8, key="attr_ig_steps", help="Integration points of Integrated Gradients")
request = (path, dataset, index, true if target < 0 else int(target), tuple(methods), int(ig_steps))
if c[2].button("Compute attributions", type="primary", key="attr_compute", icon="💡",
               disabled=not methods):
    st.session_state["attr_request"] = request

if st.session_state.get("attr_request") != request:
    st.info("Choose an image and a class, then press **Compute attributions** (a few seconds on the CPU).")
    st.stop()
try:
    with st.spinner("Computing attributions for each model…"):
        result = maps(*request)
except (ValueError, RuntimeError) as e:
    st.error(f"Could not compute the attributions: {api.md(e)}")
    st.stop()
st.plotly_chart(charts.attribution_figure(result), key="attr_figure", width="stretch")
st.caption("Heat = |attribution|, min-max normalised per map (captum's absolute-value view). Integrated Gradients: "
           "path integral of the gradient from a black image; Saliency: |gradient|; Occlusion: score drop when a "
           "patch-sized window is blacked out; Grad-CAM: penultimate ViT block (the last block's patch tokens do not "
           "reach the CLS output).")
st.dataframe(result.predictions.drop(columns="role"), hide_index=True, width="stretch", key="attr_predictions",
             column_config={c: st.column_config.NumberColumn(c, format="%.3f") for c in result.predictions.columns
                            if c.startswith("p(")})
