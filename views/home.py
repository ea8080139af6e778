"""Home: what TRACER Studio shows, and the one-click EMA-vs-WMA demo.

Drawn in two passes: first everything that needs no data (text, the demo button, the page links), then, into
the places kept for them, what reads the store (the outcome, the counts, the presets). A fresh server's first
page is this one: its button shows before the store is opened and pandas is imported.
"""
import streamlit as st

import tracer_core.api as api

svc: api.Services = st.session_state["svc"]

st.title("TRACER Studio")
st.markdown(
    "Robust fine-tuning distils a CLIP student from a **teacher that averages the student's own past weights**. "
    "An **EMA teacher** forgets exponentially fast, so it *collapses* onto the student: their KL gap shrinks to "
    "almost nothing and the teacher stops anchoring the model to what it knew before fine-tuning. "
    "A **WMA teacher** (TRACER's Beta-kernel weight average) keeps the pretrained and early snapshots in the "
    "mix, so the teacher–student gap *persists* and keeps guiding the student toward robust features."
)
outcome_box = st.container()

left, right = st.columns([3, 2])
with left:
    st.subheader("See it live")
    st.write("One click queues three short fine-tunes of the embedded tiny CLIP on handwritten digits — "
             "**TRACER with an EMA teacher**, **TRACER with a WMA teacher** and **plain FT** — and opens the live "
             "view. Runs execute one after another (teacher runs first), so the first curve appears within seconds.")
    if st.button("Run the EMA vs WMA demo", type="primary", key="demo_button", icon="▶️"):
        try:
            ids = api.start_demo(svc, st.session_state["client_token"])
        except (api.ConfigError, api.StoreError, OSError) as e:
            st.error(f"Could not start the demo: {api.md(e)}")
        else:
            st.session_state["dynamics_runs"] = ids
            st.switch_page("views/dynamics.py")
    demo_box = st.expander("What the demo runs")
with right:
    st.subheader("Now")
    now_box = st.container()

st.divider()
st.subheader("Pages")
cols = st.columns(4)
cols[0].page_link("views/launch.py", label="Launch a run or sweep", icon="🚀")
cols[1].page_link("views/dynamics.py", label="Watch training dynamics", icon="📈")
cols[2].page_link("views/kernel.py", label="Explore teacher kernels", icon="🧮")
cols[3].page_link("views/runs.py", label="Manage and export runs", icon="📋")

# -- second pass: what needs the store (opened here on a fresh server) and pandas -------------------------------
with outcome_box:
    try:        # generated from the stored demo runs, whatever it says; None until all three have finished
        outcome = api.demo_outcome(svc)
    except api.ServicesError:
        raise               # app.py says the store could not be opened
    except Exception as e:  # the Home page must open even if a stored run is garbled
        outcome = None
        st.caption(f"Outcome of the last demo unavailable: {api.md(e)}")
    if outcome:
        st.markdown(f"**Outcome of the last demo:** {api.md(outcome)} See **ID vs OOD** for the plane.")

with now_box:
    running, queued = api.job_counts(svc)
    runs = api.runs_table(svc, with_results=False)
    c1, c2, c3 = st.columns(3)
    c1.metric("Runs in store", len(runs))
    c2.metric("Running", running)
    c3.metric("Queued", queued)
    if runs.empty:
        st.info("No runs yet. Start the demo on the left, or configure your own run on **Launch**.")
    else:
        st.dataframe(runs[["label", "status", "strategy", "progress"]].head(8), hide_index=True, width="stretch",
                     column_config={"label": "run", "progress": st.column_config.ProgressColumn(
                         "progress", min_value=0.0, max_value=1.0, format="percent")})

with demo_box:
    demo = api.presets()
    st.dataframe(demo[demo["preset"].isin(api.DEMO_PRESETS)], hide_index=True, width="stretch")
    st.caption("Override its settings for quick experiments with the environment variable "
               "TRACER_DEMO_OVERRIDES (a JSON list of key=value strings), e.g. "
               '`["train.steps=40", "model.pretrained=none", "data.train_set=synthetic"]`.')
