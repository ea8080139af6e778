"""Launch + ID–OOD pages: the declared tuning grid as a sweep, and the trial chosen on ID validation per method.

The grid is one file, ``tracer_core/configs/grids/tuning_grid.json``, read by this module and by
``bench/tune_protocol.py`` alike. A sweep submits, for one method, every trial of its grid (cartesian product
in declared order) x the protocol's trial seeds, trained on ``protocol.train_set`` (mnist:fit) with the
validation set (mnist:val) among the eval sets. Runs carry the tags "tuning" and "tuning:<method>"; the
trials are found back as seed groups (configs equal up to the seed) and chosen by
:func:`tracer_core.metrics.selection.select_trial`, which reads only the validation set's accuracy.
"""
from __future__ import annotations

from tracer_core.lazy import lazy

import itertools
import json
import math
from pathlib import Path
from typing import Sequence

pd = lazy("pandas")

from tracer_core.config import ConfigError, RunConfig, load_preset
from tracer_core.metrics.selection import select_trial

from .common import Services, runs_frame
from .launch import MAX_SWEEP

GRID_FILE = Path(__file__).resolve().parents[1] / "configs" / "grids" / "tuning_grid.json"
TUNING_TAG = "tuning"


def tuning_grid(path: str | Path | None = None) -> dict:
    """The declared grid {"protocol", "methods"}; ConfigError naming the file when it is unreadable."""
    p = Path(path) if path else GRID_FILE
    try:
        grid = json.loads(p.read_text())
        grid["protocol"], grid["methods"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ConfigError(f"{p}: not a tuning grid ({type(e).__name__}: {e})") from None
    return grid


def grid_trials(method: str, grid: dict | None = None) -> list[dict]:
    """The method's trials, [{dotted key: value}] in declared order (ConfigError for an undeclared method)."""
    grid = grid or tuning_grid()
    if method not in grid["methods"]:
        raise ConfigError(f"tuning grid: no grid for method {method!r}; declared: {sorted(grid['methods'])}")
    spec = grid["methods"][method]["grid"]
    keys = list(spec)
    return [dict(zip(keys, vals)) for vals in itertools.product(*(spec[k] for k in keys))]


def trials_frame(method: str, grid: dict | None = None) -> pd.DataFrame:
    """One row per trial: trial number + the overridden keys (the Launch page's preview)."""
    trials = grid_trials(method, grid)
    return pd.DataFrame([{"trial": i + 1, **t} for i, t in enumerate(trials)])


def tuning_sweep_configs(method: str, grid: dict | None = None, extra: Sequence[str] = ()) -> list[RunConfig]:
    """Every trial x trial seed of ``method`` as a validated config (``extra`` overrides, e.g. steps, last)."""
    grid = grid or tuning_grid()
    proto, trials = grid["protocol"], grid_trials(method, grid)
    seeds = list(proto.get("trial_seeds") or [0])
    if len(trials) * len(seeds) > MAX_SWEEP:
        raise ConfigError(f"the sweep has {len(trials) * len(seeds)} runs; at most {MAX_SWEEP} per launch")
    sets = list(dict.fromkeys([proto["id_set"], proto["val_set"], *proto["ood_sets"]]))
    base = [f"data.train_set={proto['train_set']}", f"data.eval_sets={json.dumps(sets)}", *proto.get("overrides", [])]
    tags = json.dumps([TUNING_TAG, f"{TUNING_TAG}:{method}"])
    out = []
    for i, (trial, seed) in enumerate(itertools.product(trials, seeds)):
        sets_ = [*base, *(f"{k}={json.dumps(v)}" for k, v in trial.items()), f"train.seed={seed}",
                 f"name=tune-{method}-t{i // len(seeds) + 1}-s{seed}", f"tags={tags}", *extra]
        out.append(load_preset(grid["methods"][method]["preset"], sets_))
    return out


def _final_evals(services: Services, run_ids: Sequence[str]) -> dict[str, dict]:
    """run_id -> {dataset: {metric: value}} of each run's last evaluation step."""
    ev = services.store.evaluations(list(run_ids))
    out: dict[str, dict] = {r: {} for r in run_ids}
    if ev.empty:
        return out
    ev = ev[ev["step"] == ev.groupby("run_id")["step"].transform("max")]
    for (rid, ds, m), v in ev.groupby(["run_id", "dataset", "metric"])["value"].mean().items():
        out[rid].setdefault(ds, {})[m] = float(v)
    return out


def best_trials(services: Services, grid: dict | None = None) -> pd.DataFrame:
    """Per method with finished tuning runs: the trial with the best mean validation accuracy (never test/OOD).
    Columns: method, chosen trial (its overrides), val accuracy, trials, runs."""
    grid = grid or tuning_grid()
    val = grid["protocol"]["val_set"]
    runs = runs_frame(services, tags=[TUNING_TAG], status="done")
    cols = ["method", "chosen trial", f"val accuracy ({val})", "trials", "runs"]
    if runs.empty:
        return pd.DataFrame(columns=cols)
    groups = services.store.seed_groups(runs["run_id"].tolist())
    evals = _final_evals(services, runs["run_id"].tolist())
    by_id = runs.set_index("run_id")
    rows = []
    for method, g in groups.groupby("method", sort=True):
        trials = [{"config": _trial_of(by_id.at[ids[0], "config"], method, grid),
                   "seeds": [{"final_eval": evals[r]} for r in ids if val in evals[r]]} for ids in g["run_ids"]]
        trials = [t for t in trials if t["seeds"]]
        if not trials:
            continue
        i = select_trial(trials, val)
        acc = [s["final_eval"][val]["accuracy"] for s in trials[i]["seeds"]]
        rows.append({"method": method, "chosen trial": ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}"
                                                                   for k, v in trials[i]["config"].items()),
                     cols[2]: sum(acc) / len(acc), "trials": len(trials), "runs": sum(len(t["seeds"]) for t in trials)})
    return pd.DataFrame(rows, columns=cols)


def _trial_of(config_json: str, method: str, grid: dict) -> dict:
    """The grid keys' values in a run's stored config (what the trial set)."""
    cfg = json.loads(config_json or "{}")
    keys = grid["methods"].get(method, {}).get("grid", {})
    out = {}
    for k in keys:
        d = cfg
        for part in k.split("."):
            d = d.get(part, {}) if isinstance(d, dict) else {}
        out[k] = d if not isinstance(d, dict) else math.nan
    return out
