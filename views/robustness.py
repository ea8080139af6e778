"""Robustness of a finished run: zero-shot accuracy under FGSM / PGD for pretrained vs student vs teacher, and
the WiSE-FT curve (weight-space interpolation between the pretrained model and the fine-tuned student)."""
import streamlit as st

import tracer_core.api as api
import tracer_core.charts as charts

svc: api.Services = st.session_state["svc"]
st.title("Robustness")
st.caption("Computed on demand from a run checkpoint, on the CPU; results are cached per checkpoint and settings.")

runs = api.analysis_runs(svc, "checkpoint")
if runs.empty:
    st.info(api.NO_CHECKPOINT)
    st.stop()


@st.cache_data(max_entries=16, ttl=3600, show_spinner=False)
def attacks(path: str, dataset: str, eps: float, steps: int, n: int):
    return api.robustness_table(api.load_checkpoint_models(path), dataset, eps, steps, n)


@st.cache_data(max_entries=8, ttl=3600, show_spinner=False)
def wise(path: str, id_set: str, ood_sets: tuple, n_alphas: int, n: int):
    return api.wise_curve_frame(api.load_checkpoint_models(path), id_set, list(ood_sets), [i / (n_alphas - 1) for i in range(n_alphas)], n)


done = runs[runs["status"] == "done"]
labels = api.run_choices(done if not done.empty else runs)
c = st.columns([3, 2])
run_id = c[0].selectbox("Finished run", list(labels), format_func=labels.get, key="rob_run")
ckpts = api.checkpoint_choices(svc, run_id)
path = c[1].selectbox("Checkpoint", list(ckpts), key="rob_ckpt", format_func=ckpts.get)
if done.empty:
    st.warning("No run has finished yet: showing the latest checkpoint of an unfinished run.")
with st.spinner("Loading the checkpoint's models…"):         # api keeps the last two loaded for every page
    opened = api.open_checkpoint(path)
if opened.error:
    st.error(opened.error)
    st.stop()
cm = opened.models
if opened.note:
    st.caption(opened.note)

st.subheader("Adversarial attacks (L∞)")
c = st.columns([2, 3, 2, 2, 2])
dataset = c[0].selectbox("Eval set", cm.eval_sets, key="rob_set")
eps255 = c[1].slider("ε (in 1/255 of the pixel range)", 0.0, 16.0, 4.0, 0.5, key="rob_eps",
                     help="Perturbation budget ‖x_adv − x‖∞ ≤ ε; default 4/255")
steps = int(c[2].number_input("PGD steps", 1, 50, 5, key="rob_steps", help="Step size 2.5·ε / steps (Madry)"))
n = int(c[3].number_input("Images", 8, 2000, 128, step=8, key="rob_n", help="First images of the eval set"))
request = (path, dataset, eps255 / 255, steps, n)
if c[4].button("Run attacks", type="primary", key="rob_compute", icon="🛡️"):
    st.session_state["rob_request"] = request
if st.session_state.get("rob_request") == request:
    try:
        with st.spinner("Attacking each model…"):
            table = attacks(*request)
    except (ValueError, RuntimeError) as e:
        st.error(f"Could not run the attacks: {api.md(e)}")
    else:
        st.plotly_chart(charts.robustness_figure(table, dataset, steps), key="rob_figure", width="stretch")
        show = table.pivot(index="model", columns="attack", values="accuracy").reindex(
            index=table["model"].unique(), columns=table["attack"].unique()).reset_index()
        st.dataframe(show, width="stretch", key="rob_table", hide_index=True,
                     column_config={a: st.column_config.NumberColumn(a, format="%.3f") for a in show.columns[1:]})
        st.caption("Zero-shot head. A sample counts as robust only if it is correct on the clean image and on every "
                   "attacked image (every PGD iterate), so attacked accuracy ≤ clean accuracy.")
else:
    st.info("Set ε and the PGD steps, then press **Run attacks**.")

st.subheader("WiSE-FT curve")
c = st.columns([2, 4, 2, 2, 2])
ids = cm.eval_sets
id_set = c[0].selectbox("ID set", ids, key="rob_id_set")
ood = [d for d in ids if d != id_set]
if st.session_state.get("rob_ood_for") != (path, id_set):     # another checkpoint or ID set: all others
    st.session_state["rob_ood"], st.session_state["rob_ood_for"] = ood, (path, id_set)
ood_sets = c[1].multiselect("OOD sets", ood, key="rob_ood")
n_alphas = int(c[2].number_input("α values", 3, 21, 11, key="rob_alphas", help="Evenly spaced from 0 to 1"))
wise_n = int(c[3].number_input("Images per set", 16, 2000, 256, step=16, key="rob_wise_n"))
wise_request = (path, id_set, tuple(ood_sets), n_alphas, wise_n)
if c[4].button("Compute curve", type="primary", key="rob_wise_compute", icon="📉"):
    st.session_state["rob_wise_request"] = wise_request
if not ood:
    st.caption("This run has only one eval set: the curve shows ID accuracy against α (no OOD axis).")
if st.session_state.get("rob_wise_request") == wise_request:
    try:
        with st.spinner("Evaluating θ_α for each α…"):
            summary, rows = wise(*wise_request)
    except (ValueError, RuntimeError) as e:
        st.error(f"Could not compute the WiSE-FT curve: {api.md(e)}")
    else:
        if ood_sets:
            st.plotly_chart(charts.wise_figure(summary, id_set, ood_sets), key="rob_wise", width="stretch")
        st.plotly_chart(charts.wise_alpha_figure(rows), key="rob_wise_alpha", width="stretch")
        st.caption("θ_α = (1 − α)·θ₀ + α·θ_student over the whole model (and the trained head of FT-style runs). "
                   "α = 0 is the pretrained model, α = 1 the fine-tuned student; WiSE-FT typically finds an α "
                   "that gains OOD accuracy for little ID loss.")
else:
    st.info("Choose the ID and OOD sets, then press **Compute curve**.")
