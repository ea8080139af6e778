"""Teacher kernel explorer: how much each past student snapshot weighs in an EMA vs a WMA teacher.

No training: the curves come from tracer_core.teachers.schedules, the same functions the teachers run.
"""
import streamlit as st

import tracer_core.api as api
import tracer_core.charts as charts

st.title("Teacher kernel explorer")
st.markdown("A moving-average teacher is a weighted mix of the pretrained weights θ₀ and every student snapshot "
            "θⱼ it absorbed. Choose the schedules and see which snapshots it remembers, how much of θ₀ is left, "
            "and how far (in steps) it lags behind the student — **EMA** (exponential forgetting) next to "
            "**WMA** (TRACER's Beta(β, β) kernel average).")

c = st.columns(4)
total = int(c[0].number_input("Total training steps T", 2, 50_000, 300, step=50, key="k_total"))
beta = c[1].number_input("WMA β", 0.05, 5.0, 0.5, step=0.1, key="k_beta",
                         help="Beta(β, β) kernel over the updates: < 1 U-shaped (keeps early snapshots), 1 uniform")
wma_every = int(c[2].number_input("WMA update every (steps)", 1, 10_000, 1, key="k_wma_every"))
ema_every = int(c[3].number_input("EMA update every (steps)", 1, 10_000, 1, key="k_ema_every"))
c = st.columns(4)
m_start = c[0].number_input("EMA momentum start", 0.0, 1.0, 0.05, step=0.05, key="k_m_start",
                            help="Weight on the old teacher at step 0")
m_end = c[1].number_input("EMA momentum end", 0.0, 1.0, 0.9, step=0.05, key="k_m_end")
m_warmup = c[2].number_input("EMA warm-up (fraction of T)", 0.0, 1.0, 0.2, step=0.05, key="k_m_warmup")
log_y = c[3].toggle("Log y on the weights", value=False, key="k_log")
at_step = st.slider("Look at the teacher after step", 0, total - 1, total - 1, key="k_at")


@st.cache_data(max_entries=64, show_spinner=False)
def view(total, at_step, beta, wma_every, ema_every, m_start, m_end, m_warmup):
    return api.kernel_view(total, at_step, beta=beta, wma_every=wma_every, ema_every=ema_every, m_start=m_start,
                           m_end=m_end, m_warmup=m_warmup)


try:
    kv = view(total, at_step, beta, wma_every, ema_every, m_start, m_end, m_warmup)
except api.ConfigError as e:
    st.error(f"Invalid settings: {api.md(e)}")
    st.stop()

st.plotly_chart(charts.kernel_weights_figure(kv.weights, at_step, log_y=log_y), key="k_weights", width="stretch")
if kv.bin_width > 1:
    st.caption(f"{at_step + 2:,} snapshots shown in bins of {kv.bin_width}: each bar is the summed weight of "
               f"{kv.bin_width} consecutive snapshots.")
left, right = st.columns(2)
with left:
    st.plotly_chart(charts.profile_figure(kv.profile, "pretrained_share", title="Share of the pretrained weights θ₀",
                                          y_title="Weight of θ₀ in the teacher (fraction, log)", log_y=True,
                                          mark_step=at_step), key="k_share", width="stretch")
with right:
    st.plotly_chart(charts.profile_figure(kv.profile, "lag", title="Teacher lag behind the student",
                                          y_title="Lag (steps)", mark_step=at_step), key="k_lag", width="stretch")
st.dataframe(kv.summary.style.format("{:.4g}"), width="stretch")
st.caption("Lag = (s + 1) − Σⱼ j·wⱼ: the age of the teacher's weighted-mean snapshot. An EMA with momentum m has a "
           "memory of about 1/(1 − m) updates, so its lag stays small and θ₀ vanishes — the teacher collapses onto "
           "the student. A symmetric Beta kernel centres the final WMA teacher at T/2 and keeps θ₀ in the mix.")
