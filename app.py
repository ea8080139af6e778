"""TRACER Studio: the router and the frame every page shares (sidebar: data folder, live jobs).

    streamlit run app.py          # data folder: $TRACER_DATA_DIR, else <repo>/data

Pages render; tracer_core.api computes. The store and the job runner are held once per server process
(st.cache_resource), so every browser tab sees the same queue. Both open on first use and the spare worker
warms up after the first page was sent: a fresh server draws its first page as soon as a bare Streamlit
page would, then fills in what needs the store (bench: "server start -> first rendered page").
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

import tracer_core.api as api  # noqa: E402  (after st.navigation on purpose, see above; cheap: api loads
#                                 pandas, DuckDB and plotly on first use)


@st.cache_resource(on_release=lambda svc: svc.close())
def services(data_dir: str) -> api.Services:
    # opens nothing yet: the store opens when the page first asks for it, so every page draws its static
    # parts (title, controls) before DuckDB is imported and the run folders are indexed
    return api.open_services(data_dir, defer=True)


@st.fragment(run_every=3)
def jobs_sidebar(svc: api.Services) -> None:
    try:
        running, queued = api.job_counts(svc)
    except Exception as e:  # the sidebar must never break a page
        st.caption(f"Job status unavailable: {api.md(e)}")
        return
    st.metric("Running jobs", running, help="Runs training now in this data folder")
    st.caption(f"{queued} queued" if queued else "Queue empty")


def sidebar_status(svc: api.Services) -> None:
    """The store's notices and the job counter (they open the store and the runner: drawn after the page)."""
    try:
        notes = svc.store.notices[-2:]
    except api.ServicesError:
        notes = []              # the page said so already (see main)
    for note in notes:
        st.warning(api.md(note))
    jobs_sidebar(svc)


def main() -> None:
    data_dir = str(api.data_dir())
    svc = services(data_dir)
    st.session_state["svc"] = svc
    st.session_state.setdefault("client_token", api.new_client_token())
    with st.sidebar:
        st.caption("Data folder")
        # filled after the page: st.code's syntax highlighter is a lazily loaded script, and while it loads the
        # browser holds back the page's first widgets (measured: the demo button showed 0.2-2.5 s later)
        path_box, status = st.container(), st.container()
    try:
        PAGE.run()
    except api.ServicesError as e:
        st.error(f"Could not open the run store in {api.md(data_dir)}: {api.md(e.__cause__ or e)}. Check that the "
                 "folder is writable, or set TRACER_DATA_DIR to another folder.")
    except Exception as e:  # last resort: a message, never a traceback
        st.error(f"Something went wrong on this page: {type(e).__name__}: {api.md(e)}")
    finally:                # also after st.stop() in the page (a BaseException): the sidebar stays whole
        path_box.code(data_dir, language=None, wrap_lines=True)
        with status:
            sidebar_status(svc)
        svc.release_warm()  # the page has been sent: the spare worker may take a core for its warm-up now


main()
