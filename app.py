"""TRACER Studio: the router and the frame every page shares (sidebar: data folder, live jobs).

    streamlit run app.py          # data folder: $TRACER_DATA_DIR, else <repo>/data

Pages render; tracer_core.api computes. The store and the job runner are held once per server process
(st.cache_resource), so every browser tab sees the same queue.
"""
import streamlit as st

# emoji icons, not ":material/...:" ones: those load the Material Symbols font from fonts.gstatic.com, and a
# local dashboard contacts no third party (offline, the icons would break)
st.set_page_config(page_title="TRACER Studio", page_icon="📈", layout="wide")

PAGES = [
    st.Page("views/home.py", title="Home", icon="🏠", default=True),
    st.Page("views/launch.py", title="Launch", icon="🚀"),
    st.Page("views/dynamics.py", title="Live dynamics", icon="📈"),
    st.Page("views/kernel.py", title="Teacher kernel", icon="🧮"),
    st.Page("views/runs.py", title="Runs", icon="📋"),
    st.Page("views/calibration.py", title="Calibration", icon="🎯"),
    st.Page("views/representations.py", title="Representations", icon="🕸️"),
    st.Page("views/attributions.py", title="Attributions", icon="🔍"),
    st.Page("views/robustness.py", title="Robustness", icon="🛡️"),
    st.Page("views/frontier.py", title="ID vs OOD", icon="⚖️"),
]
# navigation before anything slow (importing the api and opening the store take seconds on a cold start), so
# the first menu a browser sees is this one. The pages live in views/, not pages/: a pages/ folder would put
# Streamlit in its old multipage mode, where a deep link (/runs) runs the page without this frame
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
        st.caption(f"Job status unavailable: {api.md(e)}")
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
        st.error(f"Could not open the run store in {api.md(data_dir)}: {api.md(e)}. Check that the folder is writable, or set "
                 "TRACER_DATA_DIR to another folder.")
        st.stop()
    st.session_state["svc"] = svc
    st.session_state.setdefault("client_token", api.new_client_token())
    with st.sidebar:
        st.caption("Data folder")
        st.code(data_dir, language=None, wrap_lines=True)
        for note in svc.store.notices[-2:]:
            st.warning(api.md(note))
        jobs_sidebar(svc)
    try:
        PAGE.run()
    except Exception as e:  # last resort: a message, never a traceback
        st.error(f"Something went wrong on this page: {type(e).__name__}: {api.md(e)}")


main()
