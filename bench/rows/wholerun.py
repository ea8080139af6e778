"""TRACER / FLYP over a whole default run, through the CLI as a user runs it (`train --preset P --json
--no-store`), FLYP and TRACER alternating (ABBA). Two ratios from the same runs: the training step (the
loop's mean step time, steps 2.., no evaluation) and the whole run (steps_per_s, which counts the step-0
zero-shot evaluation, the final evaluation of student and teacher and the similarity probe)."""
from __future__ import annotations

import os

from ..common import interleave, paired_ratio, spread, train_cli
from ..suite import Row

QUICK = ["train.steps=4", 'data.eval_sets=["mnist"]', "data.max_eval_samples=32", "train.similarity_probe=8"]


def whole_run(quick: bool, device: str, rounds: int | None = None) -> list[Row]:
    sets = [f"train.device={device}"] + (QUICK if quick else [])
    rounds = rounds or int(os.environ.get("BENCH_WHOLE_ROUNDS", "1"))
    res: dict[str, list[dict]] = {"flyp": [], "tracer": []}

    def runner(preset):
        def fn() -> float:
            r = train_cli(preset, sets)
            res[preset].append(r)
            return r["steps"] / r["steps_per_s"]          # seconds inside the run
        return fn
    t = interleave({"flyp": runner("flyp"), "tracer": runner("tracer")}, rounds)
    step = {p: [r["summaries"]["step_time/"]["auc_normalized"] for r in rs] for p, rs in res.items()}
    s_med, s_lo, s_hi = paired_ratio(step["tracer"], step["flyp"])
    w_med, w_lo, w_hi = paired_ratio(t["tracer"], t["flyp"])
    steps = res["flyp"][0]["steps"]
    fixed = {p: spread([w - steps * s for w, s in zip(t[p], step[p])])[0] for p in t}
    what = f"{steps} steps{' (--quick: short run)' if quick else ' (default preset)'}, {rounds} round(s) ABBA"
    return [Row("TRACER / FLYP, whole default run: training step", "FLYP, same run settings",
                f"{spread(step['tracer'])[0]:.3f} s/step", f"{spread(step['flyp'])[0]:.3f} s/step",
                s_med, s_lo, s_hi, "≤ 1.4", 1.4, note=f"{what}; mean step_time, steps 2.."),
            Row("TRACER / FLYP, whole default run: whole run (steps_per_s)", "FLYP, same run settings",
                f"{spread(t['tracer'])[0]:.1f} s", f"{spread(t['flyp'])[0]:.1f} s", w_med, w_lo, w_hi, "≤ 1.4", 1.4,
                note=f"{what}; outside the steps (evaluations, probe): TRACER {fixed['tracer']:.1f} s, "
                     f"FLYP {fixed['flyp']:.1f} s")]
