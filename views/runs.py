"""Runs: filter, group, rename, tag, delete, cancel; diff-only config view; export and HTML report."""
import streamlit as st

import tracer_core.api as api

svc: api.Services = st.session_state["svc"]
st.title("Runs")

facets = api.runs_facets(svc)
if not facets["n_runs"]:
    st.info("No runs in this data folder yet. Start the demo on **Home** or queue runs on **Launch**.")
    st.stop()
if facets["incompatible"]:   # unreadable folders (e.g. a garbled config.json) stay listed so they can be deleted
    st.warning(f"{len(facets['incompatible'])} run folder(s) cannot be read and are listed as *incompatible*: "
               + api.md("; ".join(f"{r}: {e or 'unreadable'}" for r, e in facets["incompatible"].items()))
               + ". Fix the file by hand or select the run below and delete it.")

c = st.columns([2, 2, 2, 2, 3])
status = c[0].multiselect("Status", facets["status"], key="runs_status")
method = c[1].multiselect("Method", facets["method"], key="runs_method")
teacher = c[2].multiselect("Teacher", facets["teacher"], key="runs_teacher")
tags = c[3].multiselect("Tags (all of)", facets["tags"], key="runs_tags")
name = c[4].text_input("Name contains", "", key="runs_name")
filters = dict(status=status, method=method, teacher=teacher, tags=tags, name_contains=name)
c = st.columns([2, 1, 1, 1, 2])
sort_by = c[0].selectbox("Sort by", list(api.PAGE_SORTS), format_func=api.PAGE_SORTS.get, key="runs_sort")
descending = c[1].toggle("Descending", value=True, key="runs_desc")
page_size = c[2].selectbox("Rows per page", [25, 50, 100, 200], index=1, key="runs_page_size")
pick = c[4].segmented_control("Accuracy and ECE from", ["last", "best"], default="last", key="runs_pick",
                              help="last: the final evaluation; best: the best evaluation over training")
_, total = api.runs_page(svc, page=1, page_size=1, with_results=False, **filters)
if not total:
    st.info("No run matches these filters.")
    st.stop()
n_pages = max(1, -(-total // page_size))
st.session_state["runs_page_no"] = min(st.session_state.get("runs_page_no", 1), n_pages)   # after a filter change
page_no = int(c[3].number_input(f"Page (of {n_pages})", 1, n_pages, key="runs_page_no"))


@st.fragment(run_every=3 if facets["status"] and {"queued", "running"} & set(facets["status"]) else None)
def table_view() -> None:
    """One page, filtered/sorted/paged in the store; refreshes itself while runs train (progress, results)."""
    page, n = api.runs_page(svc, page=page_no, page_size=page_size, sort_by=sort_by, descending=descending,
                            pick=pick or "last", **filters)
    results = [c for c in api.RESULT_DIRECTIONS if c in page]
    table = page.assign(tags=page["tags"].map(lambda t: ", ".join(t) if t is not None else ""))
    st.caption(api.page_caption(page_no, page_size, len(page), n))
    config = {"label": "run", "progress": st.column_config.ProgressColumn("progress", min_value=0.0, max_value=1.0,
                                                                          format="percent"),
              "images_per_s": st.column_config.NumberColumn(api.THROUGHPUT["images_per_s"], format="%.1f",
                                                            help="global batch / step time, data waits included"),
              "skipped_images": st.column_config.NumberColumn(api.THROUGHPUT["skipped_images"],
                                                              help="train images that could not be decoded")}
    st.dataframe(table[["label", "status", "strategy", "method", "teacher", "seed", "tags", "progress", *api.THROUGHPUT,
                        *results, "device", "run_id"]],
                 hide_index=True, width="stretch", column_config=config, key="runs_table")
    st.session_state["runs_on_page"] = dict(zip(page["run_id"], page["label"] + " (" + page["status"] + ")"))


table_view()

with st.expander("Group rows: mean, std and n per group (over all matching runs)",
                 expanded=bool(st.session_state.get("runs_group_by"))):
    g = st.columns([3, 2, 3])
    by = g[0].multiselect("Group by", list(api.GROUP_KEYS), key="runs_group_by", placeholder="e.g. method, teacher")
    keys = g[1].text_input("Config keys", "", key="runs_group_keys", placeholder="optim.lr, teacher.beta",
                           help="Dotted config keys, comma-separated: each becomes a group column")
    choices = api.group_metrics(facets["eval_sets"])
    stat = g[2].selectbox("Statistic of each run's last value", list(choices), key="runs_group_metric")
    try:
        groups = api.runs_groups(svc, by, choices[stat], config_keys=keys, **filters) if by or keys.strip() else None
    except ValueError as e:
        st.error(api.md(e))
    else:
        if groups is None:
            st.caption("Choose group columns or config keys: one row per group of all matching runs.")
        else:
            st.dataframe(groups, hide_index=True, width="stretch", key="runs_groups_table")
            st.caption(f"{stat}: runs = runs in the group, n = runs with a value, std = sample std (empty for n < 2).")

on_page = st.session_state.get("runs_on_page", {})
picked = [r for r in st.session_state.get("runs_selected", []) if r not in on_page]   # kept across pages
runs = api.runs_table(svc, run_ids=[*on_page, *picked], with_results=False)
labels = dict(zip(runs["run_id"], runs["label"] + " (" + runs["status"] + ")"))
selected = st.multiselect("Selected runs", list(labels), format_func=labels.get, key="runs_selected",
                          placeholder="Select runs to act on, compare or export (this page's runs and earlier picks)")
if not selected:
    st.caption("Select runs above to cancel, rename, tag, delete, diff their configs or export them.")
    st.stop()

a = st.columns(4)
if a[0].button("Open in live view", key="runs_open", icon="📈"):
    st.session_state["dynamics_runs"] = selected
    st.switch_page("views/dynamics.py")
if a[1].button("Cancel", key="runs_cancel", icon="⏹️", help="Stops queued or running runs after their current step"):
    done = [r for r in selected if api.cancel_run(svc, r)]
    st.toast(f"Cancel requested for {len(done)} run(s)" if done else "None of the selected runs is live")
with a[2].popover("Rename / tag", icon="✏️"):
    target = st.selectbox("Run", selected, format_func=labels.get, key="runs_edit_target")
    new_name = st.text_input("New name", key="runs_new_name")
    new_tags = st.text_input("Tags (comma-separated, replaces)", key="runs_new_tags")
    if st.button("Save", key="runs_save"):
        try:
            if new_name.strip():
                api.rename_run(svc, target, new_name)
            if new_tags.strip():
                api.set_tags(svc, target, new_tags)
        except api.StoreError as e:
            st.error(api.md(e))
        else:
            st.rerun()
with a[3].popover("Delete", icon="🗑️"):
    st.write(f"Delete {len(selected)} run folder(s) and their data? This cannot be undone.")
    if st.button("Delete for good", key="runs_delete", type="primary"):
        errors = []
        for r in selected:
            try:
                api.delete_run(svc, r)
            except api.StoreError as e:
                errors.append(str(e))
        st.session_state.pop("runs_selected", None)
        if errors:
            st.error(api.md("; ".join(errors)))
        else:
            st.rerun()

st.subheader("Config differences")
if len(selected) < 2:
    st.caption("Select two or more runs to see the keys whose values differ.")
else:
    try:
        diff = api.config_diff(svc, selected)
    except api.StoreError as e:
        st.error(api.md(e))
    else:
        if diff.empty:
            st.info("These runs have identical configs.")
        else:
            st.dataframe(diff, width="stretch", key="runs_diff")

st.subheader("Reproduce from the command line")
nproc = st.columns([1, 3])[0].number_input("Processes (torchrun, one per GPU)", 1, 64, 1, key="runs_nproc",
                                           help="More than 1 gives the torchrun form; data.batch_size stays global")
configs = runs.set_index("run_id")["config"]
st.code("\n\n".join(f"# {labels[r]}\n{api.cli_command(configs[r], int(nproc))}" for r in selected if configs.get(r)),
        language="bash")
st.caption("Only the keys that differ from the run's preset are listed; the run lands in this data folder's store "
           "(set TRACER_DATA_DIR for another one).")

st.subheader("Export")
e = st.columns(3)
e[0].download_button("CSV (zip)", lambda: api.export_zip(svc, selected, "csv"), file_name="tracer_runs_csv.zip",
                     mime="application/zip", key="runs_csv", on_click="ignore", icon="⬇️")
e[1].download_button("Parquet (zip)", lambda: api.export_zip(svc, selected, "parquet"),
                     file_name="tracer_runs_parquet.zip", mime="application/zip", key="runs_parquet",
                     on_click="ignore", icon="⬇️")
e[2].download_button("HTML report", lambda: api.html_report(svc, selected), file_name="tracer_report.html",
                     mime="text/html", key="runs_report", on_click="ignore", icon="📄",
                     help="Self-contained: charts (plotly inlined), summary table and config diff")
