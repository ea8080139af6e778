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

HOME = st.Page("views/home.py", title="Home", icon="🏠", default=True)
PAGES = [
    HOME,
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


def store_notices(svc: api.Services) -> None:
    """The store's last notices (a rebuilt or in-memory index, ...) in the sidebar."""
    try:
        notes = svc.store.notices[-2:]
    except api.ServicesError:
        return                  # the page says so (see main)
    for note in notes:
        st.warning(api.md(note))


def sidebar_status(svc: api.Services, data_dir: str, path_box, status) -> None:
    path_box.code(data_dir, language=None, wrap_lines=True)
    with status:
        store_notices(svc)
        jobs_sidebar(svc)


def main() -> None:
    data_dir = str(api.data_dir())
    svc = services(data_dir)
    st.session_state["svc"] = svc
    st.session_state.setdefault("client_token", api.new_client_token())
    with st.sidebar:
        st.caption("Data folder")
        path_box, status = st.container(), st.container()
    # Home (the first page) draws its text and demo button before it reads the store, and never calls st.stop():
    # the sidebar's status follows it. It would hold the first paint back: the store's notices open the store,
    # the code block's syntax highlighter and the metric are lazily loaded scripts (the demo button showed
    # 0.1-2.5 s later). Any other page may st.stop(), after which nothing more is drawn: it gets them first.
    late = PAGE is HOME
    if not late:
        sidebar_status(svc, data_dir, path_box, status)
    try:
        PAGE.run()
    except api.ServicesError as e:
        st.error(f"Could not open the run store in {api.md(data_dir)}: {api.md(e.__cause__ or e)}. Check that the "
                 "folder is writable, or set TRACER_DATA_DIR to another folder.")
    except Exception as e:  # last resort: a message, never a traceback
        st.error(f"Something went wrong on this page: {type(e).__name__}: {api.md(e)}")
    finally:
        svc.release_warm()  # the page has been sent: the spare worker may take a core for its warm-up now
    if late:
        sidebar_status(svc, data_dir, path_box, status)


main()
