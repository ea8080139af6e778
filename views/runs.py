"""Runs: filter, group, rename, tag, delete, cancel; diff-only config view; export and HTML report."""
import streamlit as st

import tracer_core.api as api

svc: api.Services = st.session_state["svc"]
st.title("Runs")

every = api.runs_table(svc, with_results=False)
if every.empty:
    st.info("No runs in this data folder yet. Start the demo on **Home** or queue runs on **Launch**.")
    st.stop()
broken = every[every["status"] == "incompatible"]
if not broken.empty:     # unreadable folders (e.g. a garbled config.json) stay listed so they can be deleted
    st.warning(f"{len(broken)} run folder(s) cannot be read and are listed as *incompatible*: "
               + api.md("; ".join(f"{r}: {e or 'unreadable'}" for r, e in zip(broken["run_id"], broken["error"])))
               + ". Fix the file by hand or select the run below and delete it.")

c = st.columns([2, 2, 2, 2, 3])
status = c[0].multiselect("Status", sorted(every["status"].dropna().unique()), key="runs_status")
method = c[1].multiselect("Method", sorted(every["method"].dropna().unique()), key="runs_method")
teacher = c[2].multiselect("Teacher", sorted(every["teacher"].dropna().unique()), key="runs_teacher")
all_tags = sorted({t for ts in every["tags"] for t in (list(ts) if ts is not None else [])})
tags = c[3].multiselect("Tags (all of)", all_tags, key="runs_tags")
name = c[4].text_input("Name contains", "", key="runs_name")
c = st.columns([2, 2, 3])
group = c[0].segmented_control("Group by", ["none", "strategy", "tags"], default="none", key="runs_group")
pick = c[1].segmented_control("Accuracy and ECE from", ["last", "best"], default="last", key="runs_pick",
                              help="last: the final evaluation; best: the best evaluation over training")
runs = api.runs_table(svc, status=status, method=method, teacher=teacher, tags=tags, name_contains=name,
                      with_results=False)
if runs.empty:
    st.info("No run matches these filters.")
    st.stop()


@st.fragment(run_every=3 if runs["status"].isin(["queued", "running"]).any() else None)
def table_view() -> None:
    """The table refreshes itself while runs train (progress, new results)."""
    fresh = api.runs_table(svc, run_ids=runs["run_id"].tolist(), pick=pick or "last")
    results = [c for c in api.RESULT_DIRECTIONS if c in fresh]
    table = fresh.assign(tags=fresh["tags"].map(lambda t: ", ".join(t) if t is not None else ""))
    if group in ("strategy", "tags"):
        agg = table.groupby(group)[results].agg(["mean", "count"])
        st.caption(f"Mean key results per {group} (count = runs with a value)")
        st.dataframe(agg, width="stretch")
    config = {"label": "run", "progress": st.column_config.ProgressColumn("progress", min_value=0.0, max_value=1.0,
                                                                          format="percent")}
    st.dataframe(table[["label", "status", "strategy", "method", "teacher", "seed", "tags", "progress", *results,
                        "device", "run_id"]],
                 hide_index=True, width="stretch", column_config=config)


table_view()
labels = dict(zip(runs["run_id"], runs["label"] + " (" + runs["status"] + ")"))
selected = st.multiselect("Selected runs", list(labels), format_func=labels.get, key="runs_selected",
                          placeholder="Select runs to act on, compare or export")
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
