"""ID vs OOD: every selected run on the ID–OOD plane against the WiSE-FT frontier of a fine-tuned endpoint,
effective robustness per run and seed group, accuracy on the line per OOD set, and the tuning sweep's choice."""
import pandas as pd
import streamlit as st

import tracer_core.api as api
import tracer_core.charts as charts

svc: api.Services = st.session_state["svc"]
st.title("ID vs OOD")
st.caption("A method is more robust only if it lies **above** the WiSE-FT frontier at the same ID accuracy "
           "(effective robustness; Taori et al. 2020, Wortsman et al. 2022). Numbers: each run's last evaluation.")

runs = api.runs_table(svc, with_results=False)
if runs.empty:
    st.info("No runs yet. Start the demo on **Home** or queue runs with an OOD eval set on **Launch**; "
            "each finished run appears here as a point.")
    st.stop()

labels = api.run_choices(runs, with_status=True)
done = runs[runs["status"] == "done"]["run_id"].head(40).tolist()
st.session_state["fr_runs"] = api.keep_valid(st.session_state.get("fr_runs"), labels, default=done)
c = st.columns([5, 2])
selected = c[0].multiselect("Runs", list(labels), format_func=labels.get, key="fr_runs",
                            placeholder="Choose runs to place on the plane")
all_points = api.plane_points(svc, selected)
choices = api.ood_choices(all_points)
ood = c[1].selectbox("OOD axis", [api.OOD_MEAN, *choices], key="fr_ood",
                     format_func=lambda s: "mean of the OOD sets" if s == api.OOD_MEAN else s)
points = api.plane_points(svc, selected, ood) if ood != api.OOD_MEAN else all_points
if points.empty:
    st.info("None of the selected runs has both an ID and an OOD evaluation. Select finished runs, or launch "
            "runs whose data.eval_sets include an OOD set (e.g. colored_mnist) besides the ID set.")
    st.stop()
id_sets = points["id_set"].value_counts().index.tolist()
id_name = id_sets[0] if len(id_sets) == 1 else st.selectbox("ID set", id_sets, key="fr_id_set")
points = points[points["id_set"] == id_name].reset_index(drop=True)
ood_sets = [s for s in ([ood] if ood != api.OOD_MEAN else choices) if s in points and points[s].notna().any()]
ood_label = "mean of " + ", ".join(ood_sets) if ood == api.OOD_MEAN else ood

st.subheader("Frontier")
ck = api.analysis_runs(svc, "checkpoint")
ck = ck[ck["run_id"].isin(points["run_id"])]
ends = api.run_choices(ck) if not ck.empty else {}
# the frontier is drawn from a plain fine-tune: default to the newest FT run, not the newest run with a checkpoint
# (the demo's TRACER runs save one too, and a TRACER endpoint would measure TRACER against itself)
ft_ends = ck.loc[ck["method"] == "ft", "run_id"].tolist() if not ck.empty else []
c = st.columns([4, 2, 2, 2])
end = c[0].selectbox("Fine-tuned endpoint (α = 1)", list(ends), format_func=ends.get, key="fr_end",
                     index=list(ends).index(ft_ends[0]) if ft_ends and ft_ends[0] in ends else 0,
                     help="A run with a checkpoint; θ_α = (1 − α)·θ_zero-shot + α·θ_endpoint")
n_alphas = int(c[1].number_input("α values", 3, 21, 6, key="fr_alphas", help="Evenly spaced from 0 to 1"))
n_own = min(2000, api.endpoint_eval_samples(ck.set_index("run_id").at[end, "config"])) if end is not None else 200
n_img = int(c[2].number_input("Images per set", 16, 2000, n_own, step=16, key=f"fr_n_{end}",
                              help="Default: the endpoint's own evaluation size, so α = 1 is its stored point"))


@st.cache_data(max_entries=8, ttl=3600, show_spinner=False)
def wise(path: str, id_set: str, sets: tuple, n_alphas: int, n: int) -> pd.DataFrame:
    summary, _ = api.wise_curve_frame(api.load_checkpoint_models(path), id_set, list(sets),
                                      [i / (n_alphas - 1) for i in range(n_alphas)], n)
    return summary


curve, frontier_label, zs = None, "", api.zero_shot_point(svc, id_name, ood, ood_sets)
if end is not None:
    path = next(iter(api.checkpoint_choices(svc, end)), None)       # newest first: the final checkpoint
    request = (path, id_name, tuple(ood_sets), n_alphas, n_img)
    if c[3].button("Compute WiSE-FT curve", type="primary", key="fr_compute", disabled=path is None):
        st.session_state["fr_request"] = request
    if st.session_state.get("fr_request") == request:
        try:
            with st.spinner("Loading the checkpoint and evaluating θ_α for each α…"):
                curve = api.remember_wise(end, ood_sets, wise(*request))
            frontier_label = f"WiSE-FT frontier of {labels[end].split(' — ')[0]}"
        except (ValueError, OSError, RuntimeError) as e:
            st.error(f"Could not compute the WiSE-FT curve: {api.md(e)}")
    if curve is None and zs is not None:
        row = points[points["run_id"] == end]
        if not row.empty:
            curve = api.line_frontier(zs, row.iloc[0])
            frontier_label = "zero-shot–FT line (α = 0 and 1 only)"
            st.caption("Until the WiSE-FT curve is computed, the frontier is the straight line from the zero-shot "
                       "point to the endpoint (WiSE-FT's two endpoints, no α between evaluated).")
else:
    st.info("No selected run has a checkpoint, so there is no WiSE-FT frontier yet: select or launch a fine-tuned "
            "run (FT saves its final checkpoint) to trace one.")
if zs is None:
    st.caption("No zero-shot point: no finished zero-shot run and no step-0 evaluation is stored "
               "(launch the zeroshot preset, or a run with train.eval_at_start=true).")

per, groups = api.er_tables(points, curve) if curve is not None else (pd.DataFrame(), pd.DataFrame())
fig = charts.frontier_figure(points, groups, zs, curve, id_name, ood_label, frontier_label or "frontier")
st.plotly_chart(fig, key="fr_plane", width="stretch")

st.subheader("Effective robustness")
if per.empty:
    st.info("Compute the WiSE-FT curve above (or store a zero-shot evaluation) to measure each run against it.")
else:
    st.caption(f"ER = OOD − frontier at the run's ID accuracy, in points, against the {api.md(frontier_label)}. "
               "n/a: the run's ID accuracy lies outside the frontier's ID range; 'ER extended' then extends the "
               "frontier's end segment to it: an estimate, not an effective robustness.")
    st.dataframe(charts.sign_style(api.er_display(per)), key="fr_er_table", hide_index=True, width="stretch")
    gshow = groups[groups["n"] > 1]
    if not gshow.empty:
        st.caption("Seed groups (runs that differ only by seed): mean ± std over seeds.")
        g = pd.DataFrame({"group": gshow["group_label"], "seeds": gshow["n"], "ID % mean": 100 * gshow["id mean"],
                          "OOD % mean": 100 * gshow["ood mean"],
                          "ER mean (points)": 100 * gshow["effective_robustness mean"],
                          "ER std": 100 * gshow["effective_robustness std"],
                          "seeds with ER": gshow["runs with ER"], "sign": gshow["sign"]})
        st.dataframe(charts.sign_style(g), key="fr_group_table", hide_index=True, width="stretch")

st.subheader("Accuracy on the line")
line = api.line_table(svc)
if line.empty or line["n"].max() < 3:
    st.info("Needs at least 3 runs in the store with the same ID set and an OOD set to correlate.")
else:
    st.caption("Per OOD set, over ALL runs in the store: Pearson r of probit(OOD accuracy) with probit(ID "
               "accuracy) (Miller et al. 2021). r near 1: the set follows ID accuracy and says little about "
               "robustness beyond it.")
    st.dataframe(line, key="fr_line", hide_index=True, width="stretch",
                 column_config={"r": st.column_config.NumberColumn("r (probit)", format="%.2f"),
                                "slope": st.column_config.NumberColumn(format="%.2f")})

st.subheader("Tuning sweep: the trial chosen on ID validation")
best = api.best_trials(svc)
if best.empty:
    st.info("No finished tuning runs. Start a sweep from the declared grid on **Launch** (Tuning sweep).")
else:
    st.caption("Per method, the trial with the best mean accuracy on the validation split; test and OOD sets "
               "are never read by the choice.")
    st.dataframe(best, key="fr_best", hide_index=True, width="stretch")
