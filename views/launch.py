"""Launch: a preset plus the parameters that matter, validated in the form; optional sweep."""
import streamlit as st

import tracer_core.api as api

svc: api.Services = st.session_state["svc"]

st.title("Launch a run")
presets = api.presets()
preset = st.selectbox("Preset", presets["preset"].tolist(), key="launch_preset",
                      index=presets["preset"].tolist().index("tracer") if "tracer" in presets["preset"].tolist() else 0)
st.caption(presets.set_index("preset").at[preset, "description"] or "No description.")
st.info("**FT2B** and **GRACE** are reconstructions: their papers' method sections are not public, so the "
        "formulas follow our reference notes and every unknown value is a `method_params.*` setting.",
        icon="ℹ️")
try:
    v = api.form_values(preset)
    datasets = api.list_datasets()
except (api.ConfigError, ImportError, OSError) as e:
    st.error(f"Cannot read preset {api.md(repr(preset))}: {api.md(e)}")
    st.stop()
k = f"l_{preset}_"   # widget keys per preset: choosing another preset resets the form to its values


def num(col, label, field, help=None, fmt=None, **kw):
    value = v[field]
    if isinstance(value, float):
        kw.setdefault("format", fmt or "%.4g")
    return col.number_input(label, value=value, key=k + field, help=help, **kw)


with st.form("launch_form"):
    st.markdown("**Strategy**")
    c = st.columns(4)
    vals = {"method": c[0].selectbox("Method", api.METHODS, index=api.METHODS.index(v["method"]), key=k + "method"),
            "teacher": c[1].selectbox("Teacher", api.TEACHER_KINDS, index=api.TEACHER_KINDS.index(v["teacher"]),
                                      key=k + "teacher", help=" · ".join(f"{t}: {api.TEACHER_HELP[t]}" for t in api.TEACHER_KINDS))}
    vals["beta"] = num(c[2], "WMA β", "beta", "Beta(β, β) kernel; 0.5 is U-shaped, 1 uniform", step=0.1)
    vals["update_every"] = num(c[3], "Teacher update every (steps)", "update_every",
                               "≤ 0: the spec's default (WMA every step, EMA every 500)", step=1)
    c = st.columns(3)
    vals["m_start"] = num(c[0], "EMA momentum start", "m_start", step=0.05)
    vals["m_end"] = num(c[1], "EMA momentum end", "m_end", step=0.05)
    vals["m_warmup"] = num(c[2], "EMA warm-up (fraction of steps)", "m_warmup", step=0.05)
    st.markdown("**Distillation loss**")
    c = st.columns(5)
    vals["lambda_sd"] = num(c[0], "λ_SD", "lambda_sd", "weight of self-distillation (needs a teacher)", step=0.1)
    for col, (f, label) in zip(c[1:], [("alpha_crd", "α CRD"), ("alpha_fd", "α FD"), ("alpha_icl", "α ICL"),
                                       ("alpha_cross_kd", "α cross-KD")]):
        vals[f] = num(col, label, f, step=0.1)
    st.markdown("**Optimisation**")
    c = st.columns(4)
    vals["lr"] = num(c[0], "Learning rate", "lr", fmt="%.2e", step=1e-5, min_value=0.0)
    vals["steps"] = num(c[1], "Steps", "steps", step=10)
    vals["batch_size"] = num(c[2], "Batch size", "batch_size", step=8)
    vals["seed"] = num(c[3], "Seed", "seed", step=1)
    st.markdown("**Model and data**")
    c = st.columns(4)
    vals["model"] = c[0].text_input("Model (open_clip name)", v["model"], key=k + "model")
    vals["pretrained"] = c[1].text_input("Pretrained weights", v["pretrained"], key=k + "pretrained",
                                         help="embedded · none · an open_clip tag · a checkpoint path")
    vals["train_set"] = c[2].selectbox("Train set", datasets, key=k + "train_set",
                                       index=datasets.index(v["train_set"]) if v["train_set"] in datasets else 0)
    vals["eval_sets"] = c[3].multiselect("Eval sets", datasets, [d for d in v["eval_sets"] if d in datasets],
                                         key=k + "eval_sets")
    c = st.columns(2)
    vals["name"] = c[0].text_input("Run name", v["name"], key=k + "name")
    tags = c[1].text_input("Tags (comma-separated)", "", key=k + "tags")
    with st.expander("Sweep: one run per combination"):
        c = st.columns(3)
        seeds = c[0].text_input("Seeds", "", key=k + "sweep_seeds", placeholder="e.g. 0, 1, 2")
        betas = c[1].text_input("β values", "", key=k + "sweep_betas", placeholder="e.g. 0.2, 0.5, 1.0")
        lambdas = c[2].text_input("λ_SD values", "", key=k + "sweep_lambdas", placeholder="e.g. 0.5, 0.9")
    with st.expander("Advanced: extra overrides"):
        extra = st.text_area("One key=value per line", "", key=k + "extra",
                             placeholder="optim.warmup_steps=10\ntrain.eval_every=50\ndata.path=/data/images")
    submitted = st.form_submit_button("Launch", type="primary", icon="🚀")


def queue(make_configs, invalid: str, noun: str, done) -> None:
    """Queue the configs ``make_configs()`` builds: a bad config shows "Invalid <invalid>: ...", a store that
    cannot take the runs "Could not queue the <noun>: ..."; else ``done(ids)`` is the success line."""
    try:
        ids = api.submit_runs(svc, make_configs(), st.session_state["client_token"])
    except api.ConfigError as e:
        st.error(f"Invalid {invalid}: {api.md(e)}")
    except (api.StoreError, OSError) as e:
        st.error(f"Could not queue the {noun}: {api.md(e)}")
    else:
        st.session_state["launched"] = ids
        st.success(done(ids))


def form_configs() -> list:
    base = api.build_config(preset, vals, extra, tags)
    return api.sweep_configs(base, api.parse_list(seeds, int, "Seeds"), api.parse_list(betas, float, "β values"),
                             api.parse_list(lambdas, float, "λ_SD values"))


if submitted:
    queue(form_configs, "settings", "run",
          lambda ids: f"Queued {len(ids)} run{'s' if len(ids) > 1 else ''}: {', '.join(ids)}")

if st.session_state.get("launched"):
    if st.button("Watch them live", key="launch_watch", icon="📈"):
        st.session_state["dynamics_runs"] = st.session_state.pop("launched")
        st.switch_page("views/dynamics.py")

st.subheader("Tuning sweep from the declared grid")
try:
    grid = api.tuning_grid()
except api.ConfigError as e:
    st.error(f"Could not read the tuning grid: {api.md(e)}")
else:
    proto = grid["protocol"]
    st.caption(f"Every trial of the method's grid ({api.md(api.GRID_FILE.name)}, the file bench/tune_protocol.py "
               f"reads) x seeds {api.md(proto['trial_seeds'])}, trained on {api.md(proto['train_set'])} with "
               f"{api.md(proto['val_set'])} among the eval sets. **ID vs OOD** then picks per method the trial with "
               "the best validation accuracy (never test or OOD).")
    c = st.columns([2, 4])
    tune_method = c[0].selectbox("Method", sorted(grid["methods"]), key="tune_method")
    tune_extra = c[1].text_input("Extra overrides (space-separated key=value)", "", key="tune_extra",
                                 placeholder="e.g. train.steps=40 data.max_eval_samples=300")
    st.dataframe(api.trials_frame(tune_method, grid), hide_index=True, width="stretch", key="tune_trials")
    if st.button(f"Queue {len(api.grid_trials(tune_method, grid)) * len(proto['trial_seeds'])} tuning runs",
                 key="tune_submit", icon="🧪"):
        queue(lambda: api.tuning_sweep_configs(tune_method, grid, tune_extra.split()), "sweep", "sweep",
              lambda ids: f"Queued {len(ids)} tuning runs of {api.md(tune_method)}.")

st.caption("Runs launched here train in a background process on this machine, one at a time. With several GPUs, "
           "start a run with `torchrun` from the command line (the **Runs** page prints the command for any run): "
           "it shows up on these pages live like any other.")
