"""Choosing a configuration per method from validation results only (the tuned protocol's rule).

A trial is {"config": {...overrides}, "seeds": [run result, ...]} where a run result is what
``python -m tracer_core train --json`` prints ({"final_eval": {set: {"accuracy", "ece", ...}}}).
Score of a trial = mean over its seeds of final_eval[val_set][metric]. The chosen trial maximises the score;
ties go to the earlier trial in the grid (a declared order, so the choice is reproducible). Only
``final_eval[val_set]`` is read: a copy of the results with every other set removed selects the same trial
(``validation_view``), which the tests check by poisoning the test and OOD numbers.
"""
from __future__ import annotations

import math
import statistics
from typing import Mapping, Sequence


def validation_view(run: Mapping, val_set: str) -> dict:
    """The part of a run result the selection may see: {"final_eval": {val_set: ...}}; KeyError names it."""
    ev = run.get("final_eval", {})
    if val_set not in ev:
        raise KeyError(f"run result has no validation set {val_set!r} in final_eval (has {sorted(ev)}); "
                       f"add it to data.eval_sets")
    return {"final_eval": {val_set: dict(ev[val_set])}}


def trial_score(seed_runs: Sequence[Mapping], val_set: str, metric: str = "accuracy") -> float:
    """mean_s final_eval[val_set][metric] over the seeds' runs (NaN without runs)."""
    vals = [validation_view(r, val_set)["final_eval"][val_set][metric] for r in seed_runs]
    return statistics.fmean(vals) if vals else math.nan


def select_trial(trials: Sequence[Mapping], val_set: str, metric: str = "accuracy") -> int:
    """Index of the trial with the best validation score (first on ties, NaN scores never chosen)."""
    if not trials:
        raise ValueError("select_trial: no trials")
    best, best_score = -1, -math.inf
    for i, t in enumerate(trials):
        s = trial_score(t["seeds"], val_set, metric)
        if not math.isnan(s) and s > best_score:
            best, best_score = i, s
    if best < 0:
        raise ValueError(f"select_trial: no trial has a finite {metric} on {val_set!r}")
    return best
