"""Representations page: per-layer CKA / SVCCA rows of the runs."""
from __future__ import annotations

from tracer_core.lazy import lazy

from typing import Sequence

pd = lazy("pandas")

from .common import runs_frame, with_runs

SIM_KINDS = {"linear_cka": "linear CKA", "linear_cka_debiased": "debiased linear CKA", "svcca": "SVCCA"}
SIM_PAIRS = {"student_vs_pretrained": "student vs pretrained", "student_vs_teacher": "student vs teacher",
             "teacher_vs_pretrained": "teacher vs pretrained"}


def similarity_frame(services, run_ids: Sequence[str], tower: str = "vision",
                     kind: str = "linear_cka") -> pd.DataFrame:
    """Per-layer similarity rows of one tower and measure: run_id, label, strategy, teacher, step, layer,
    layer_index, pair, value (layers in network order)."""
    cols = ["run_id", "label", "strategy", "teacher", "step", "layer", "layer_index", "pair", "value"]
    if not run_ids:
        return pd.DataFrame(columns=cols)
    sim = services.store.similarities(list(run_ids))
    sim = sim[(sim["tower"] == tower) & (sim["kind"] == kind)]
    if sim.empty:
        return pd.DataFrame(columns=cols)
    sim = with_runs(sim, runs_frame(services, run_ids))
    order = {r: i for i, r in enumerate(run_ids)}
    sim = sim.assign(_o=sim["run_id"].map(order)).sort_values(["_o", "step", "layer_index", "pair"])
    return sim[cols].reset_index(drop=True)


COMPARE_TEACHERS = ("ema", "wma")      # the page's point: an EMA teacher collapses, a WMA teacher does not


def default_comparison(runs: pd.DataFrame) -> list[str]:
    """The first run (in the frame's order: newest first) of each teacher kind in COMPARE_TEACHERS."""
    return [runs.loc[runs["teacher"] == t, "run_id"].iloc[0] for t in COMPARE_TEACHERS if (runs["teacher"] == t).any()]
