"""Background training jobs: JobRunner (queue + supervised worker subprocesses) and the worker entry point.

No streamlit import anywhere here; the dashboard holds one JobRunner in st.cache_resource.
"""
