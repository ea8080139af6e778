"""TRACER Studio: the router and the frame every page shares (sidebar: data folder, live jobs).

    streamlit run app.py          # data folder: $TRACER_DATA_DIR, else <repo>/data

Pages render; tracer_core.api computes. The store and the job runner are held once per server process
(st.cache_resource), so every browser tab sees the same queue.
"""
import streamlit as st

st.set_page_config(page_title="TRACER Studio", page_icon=":material/monitoring:", layout="wide")

PAGES = [
    st.Page("pages/home.py", title="Home", icon=":material/home:", default=True),
    st.Page("pages/launch.py", title="Launch", icon=":material/rocket_launch:"),
    st.Page("pages/dynamics.py", title="Live dynamics", icon=":material/monitoring:"),
    st.Page("pages/kernel.py", title="Teacher kernel", icon=":material/functions:"),
    st.Page("pages/runs.py", title="Runs", icon=":material/table_view:"),
    st.Page("pages/calibration.py", title="Calibration", icon=":material/speed:"),
    st.Page("pages/representations.py", title="Representations", icon=":material/hub:"),
    st.Page("pages/attributions.py", title="Attributions", icon=":material/image_search:"),
    st.Page("pages/robustness.py", title="Robustness", icon=":material/shield:"),
]
# navigation before anything slow: until a session has called st.navigation, Streamlit shows its automatic
# pages/-directory menu, whose links would run a page without this frame (importing the api and opening the
# store take seconds on a cold start)
PAGE = st.navigation(PAGES)

import tracer_core.api as api  # noqa: E402  (after st.navigation on purpose, see above)


@st.cache_resource(show_spinner="Opening the run store…", on_release=lambda svc: svc.close())
def services(data_dir: str) -> api.Services:
    return api.open_services(data_dir)


@st.fragment(run_every=3)
def jobs_sidebar(svc: api.Services) -> None:
    try:
        jobs = api.jobs_table(svc)
    except Exception as e:  # the sidebar must never break a page
        st.caption(f"Job status unavailable: {e}")
        return
    running = int((jobs["status"] == "running").sum())
    queued = int((jobs["status"] == "queued").sum())
    st.metric("Running jobs", running, help="Runs training now in this data folder")
    st.caption(f"{queued} queued" if queued else "Queue empty")


def main() -> None:
    data_dir = str(api.data_dir())
    try:
        svc = services(data_dir)
    except Exception as e:
        st.error(f"Could not open the run store in {data_dir}: {e}. Check that the folder is writable, or set "
                 "TRACER_DATA_DIR to another folder.")
        st.stop()
    st.session_state["svc"] = svc
    st.session_state.setdefault("client_token", api.new_client_token())
    with st.sidebar:
        st.caption("Data folder")
        st.code(data_dir, language=None, wrap_lines=True)
        for note in svc.store.notices[-2:]:
            st.warning(note)
        jobs_sidebar(svc)
    try:
        PAGE.run()
    except Exception as e:  # last resort: a message, never a traceback
        st.error(f"Something went wrong on this page: {type(e).__name__}: {e}")


main()
