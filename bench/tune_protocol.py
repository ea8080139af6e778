"""The tuned protocol (issue 14): every method tuned on the same declared grid budget, chosen on ID validation.

    python bench/tune_protocol.py [--grid tracer_core/configs/grids/tuning_grid.json] [--methods ft tracer ...] [--jobs 2]
    python bench/tune_protocol.py --quick --out /tmp/x        # smoke test: 1 trial, 1 seed, 2 steps
    python bench/tune_protocol.py --render                     # rebuild the markdown from the JSON

1. Trials: for each method, every point of its grid (tracer_core/configs/grids/tuning_grid.json, the file the Launch page sweeps; same count per method) is run
   with `python -m tracer_core train --preset P --json --no-store` on data.train_set = mnist:fit, for the
   protocol's trial seeds, evaluating mnist:val (validation), mnist (test) and the OOD sets.
2. Selection: tracer_core.metrics.selection.select_trial on mnist:val only (mean over trial seeds).
3. Final: the chosen config per method over the final seeds (runs shared with the trials are reused).
4. Frontier: per final seed, the WiSE-FT curve of the chosen FT config (alpha 0 = zeroshot preset, alpha 1 =
   the FT run itself, others = the wiseft preset at that alpha); each method's effective robustness =
   its OOD mean minus the frontier at its ID test accuracy (robustness_frontier.effective_robustness).
Writes OUT/tuning_results.json and OUT/tuning_results.md; per-run JSON is cached under OUT/tuning_runs/.
"""
from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import math
import os
import platform
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tracer_core.metrics.outcome import outcome_sentence                          # noqa: E402
from tracer_core.metrics.robustness_frontier import (accuracy_on_line, effective_robustness,   # noqa: E402
                                                     seed_stats)
from tracer_core.metrics.selection import select_trial                           # noqa: E402

QUICK = ["train.steps=2", "data.max_eval_samples=32", "data.batch_size=8", "train.similarity_probe=0",
         "train.eval_at_start=false", "train.save_final=false"]
LABELS = {"ft": "FT", "tracer": "TRACER-WMA", "tracer_ema": "TRACER-EMA", "flyp": "FLYP", "carot": "CaRot",
          "lp": "LP", "lpft": "LP-FT", "l2sp": "L2-SP", "wiseft": "WiSE-FT", "ft2b": "FT2B", "grace": "GRACE"}


def load_grid(path: Path, methods: list[str] | None) -> dict:
    grid = json.loads(path.read_text())
    proto, table = grid["protocol"], grid["methods"]
    unknown = [m for m in methods or [] if m not in table]
    if unknown:
        raise SystemExit(f"{path}: no grid for method(s) {unknown}; declared: {sorted(table)}")
    for m, spec in table.items():
        n = math.prod(len(v) for v in spec["grid"].values())
        if n != proto["trials_per_method"]:
            raise SystemExit(f"{path}: methods.{m}.grid has {n} trials, protocol.trials_per_method is "
                             f"{proto['trials_per_method']}: every method must get the same number of trials")
    grid["methods"] = {m: table[m] for m in (methods or table)}
    return grid


def trials_of(spec: dict) -> list[dict]:
    """The grid's cartesian product in declared order: [{dotted key: value}]."""
    keys = list(spec["grid"])
    return [dict(zip(keys, vals)) for vals in itertools.product(*(spec["grid"][k] for k in keys))]


def base_overrides(proto: dict, extra: list[str]) -> list[str]:
    sets = [proto["id_set"], proto["val_set"], *proto["ood_sets"]]
    return [f"data.train_set={proto['train_set']}", f"data.eval_sets={json.dumps(sets)}", *proto["overrides"], *extra]


def run_cli(preset: str, config: dict, seed: int, base: list[str], work: Path, threads: int) -> dict:
    """One CLI run (cached by its full command): the printed --json result plus process_s and the load."""
    sets = base + [f"{k}={json.dumps(v)}" for k, v in config.items()] + [f"train.seed={seed}",
                                                                          f"train.threads={threads}"]
    key = hashlib.sha1(json.dumps([preset, sets]).encode()).hexdigest()[:16]
    path = work / f"{preset}_{key}.json"
    if path.exists():
        return json.loads(path.read_text())
    cmd = [sys.executable, "-m", "tracer_core", "train", "--preset", preset, "--json", "--no-store"]
    cmd += [a for s in sets for a in ("--set", s)]
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    t0, load0 = time.perf_counter(), os.getloadavg()[0]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise RuntimeError(f"{preset} {config} seed {seed} failed:\n{proc.stderr[-2000:]}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    result["bench"] = {"preset": preset, "config": config, "seed": seed, "process_s": round(time.perf_counter() - t0, 1),
                       "load_1min": [round(load0, 2), round(os.getloadavg()[0], 2)], "wall_s": round(time.time() - t0)}
    work.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result))
    return result


def run_many(tasks: list[tuple], base, work, jobs, threads) -> dict:
    """tasks: (preset, config, seed) -> {task index: result}; failures are printed and left out."""
    def one(i):
        preset, config, seed = tasks[i]
        try:
            r = run_cli(preset, config, seed, base, work, threads)
            print(f"{preset} {config} s{seed}: " + ", ".join(f"{k} {v['accuracy']:.3f}"
                                                           for k, v in r["final_eval"].items()), flush=True)
            return i, r
        except Exception as e:   # keep the other runs; the table marks what is missing
            print(f"FAILED {preset} {config} s{seed}: {e}", flush=True)
            return i, None
    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        return {i: r for i, r in pool.map(one, range(len(tasks))) if r is not None}


def _acc(run: dict, name: str) -> float:
    return run["final_eval"][name]["accuracy"]


def _ood_mean(run: dict, proto: dict) -> float:
    return sum(_acc(run, s) for s in proto["ood_sets"]) / len(proto["ood_sets"])


def tune(grid: dict, base, work, jobs, threads) -> dict:
    """Trials, validation-only selection, final seeds. Returns {method: {"trials", "chosen", "finals"}}."""
    proto = grid["protocol"]
    tasks = [(spec["preset"], cfg, s) for spec in grid["methods"].values() for cfg in trials_of(spec)
             for s in proto["trial_seeds"]]
    done = run_many(tasks, base, work, jobs, threads)
    out, i = {}, 0
    for m, spec in grid["methods"].items():
        trials = []
        for cfg in trials_of(spec):
            runs = [done.get(i + k) for k in range(len(proto["trial_seeds"]))]
            i += len(proto["trial_seeds"])
            trials.append({"config": cfg, "seeds": [r for r in runs if r is not None]})
        chosen = select_trial([t for t in trials if t["seeds"]] or trials, proto["val_set"])
        out[m] = {"trials": trials, "chosen": [t for t in trials if t["seeds"]][chosen]["config"]}
    finals = [(grid["methods"][m]["preset"], out[m]["chosen"], s) for m in out for s in proto["final_seeds"]]
    fin = run_many(finals, base, work, jobs, threads)
    for j, (preset, cfg, s) in enumerate(finals):
        m = next(k for k in out if grid["methods"][k]["preset"] == preset and out[k]["chosen"] == cfg)
        out[m].setdefault("finals", {})[s] = fin.get(j)
    return out


def frontier(grid: dict, tuned: dict, base, work, jobs, threads) -> dict:
    """Per final seed: [{"alpha", "id", "ood"}] of the chosen FT config's WiSE-FT curve."""
    proto, fm = grid["protocol"], grid["protocol"]["frontier_method"]
    if fm not in tuned:
        return {}
    ft_cfg = tuned[fm]["chosen"]
    mids = [a for a in proto["wise_alphas"] if 0.0 < a < 1.0]
    tasks = [("zeroshot", {}, s) for s in proto["final_seeds"]]
    tasks += [("wiseft", {**ft_cfg, "method_params.wise_alpha": a}, s) for s in proto["final_seeds"] for a in mids]
    done = run_many(tasks, base, work, jobs, threads)
    curves = {}
    for s in proto["final_seeds"]:
        ends = [(0.0, done.get(proto["final_seeds"].index(s))), (1.0, tuned[fm]["finals"].get(s))]
        for j, (preset, cfg, seed) in enumerate(tasks):
            if preset == "wiseft" and seed == s:
                ends.append((cfg["method_params.wise_alpha"], done.get(j)))
        curves[s] = sorted(({"alpha": a, "id": _acc(r, proto["id_set"]), "ood": _ood_mean(r, proto)}
                            for a, r in ends if r is not None), key=lambda p: p["alpha"])
    return curves


def _er(run: dict, curve: list, proto: dict, extrapolate: bool = False) -> dict:
    if len({p["alpha"] for p in curve}) < 2:
        return {"effective_robustness": math.nan, "frontier_ood": math.nan, "position": "no frontier"}
    return effective_robustness(curve, _acc(run, proto["id_set"]), _ood_mean(run, proto), extrapolate)


def summarize(grid: dict, tuned: dict, curves: dict) -> dict:
    """Per method: seed stats of val, ID, each OOD set, OOD mean, ECE ID and effective robustness."""
    proto, out = grid["protocol"], {}
    for m, t in tuned.items():
        runs = {s: r for s, r in t.get("finals", {}).items() if r is not None}
        ers = {s: _er(r, curves.get(s, []), proto) for s, r in runs.items()}
        out[m] = {"config": t["chosen"], "seeds": sorted(runs),
                  "val": seed_stats(_acc(r, proto["val_set"]) for r in runs.values()),
                  "id": seed_stats(_acc(r, proto["id_set"]) for r in runs.values()),
                  "ood": {n: seed_stats(_acc(r, n) for r in runs.values()) for n in proto["ood_sets"]},
                  "ood_mean": seed_stats(_ood_mean(r, proto) for r in runs.values()),
                  "ece_id": seed_stats(r["final_eval"][proto["id_set"]].get("ece") for r in runs.values()),
                  "effective_robustness": seed_stats(e["effective_robustness"] for e in ers.values()),
                  # the frontier's end segment extended: a labelled estimate where a run's ID leaves the range
                  "er_extrapolated": seed_stats(_er(r, curves.get(s, []), proto, True)["effective_robustness"]
                                                for s, r in runs.items()),
                  "er_positions": sorted({e["position"] for e in ers.values()})}
    return out


def on_the_line(tuned: dict, proto: dict) -> list[dict]:
    """Accuracy on the line over every distinct run of the protocol (trials and finals), probit axes."""
    runs = {}
    for t in tuned.values():
        for r in [r for tr in t["trials"] for r in tr["seeds"]] + list(t.get("finals", {}).values()):
            if r is not None:
                runs[json.dumps(r["bench"], sort_keys=True)] = {k: v["accuracy"] for k, v in r["final_eval"].items()}
    return accuracy_on_line(list(runs.values()), proto["id_set"], proto["ood_sets"], space="probit")


def _cell(st: dict, scale: float = 100.0, signed: bool = False) -> str:
    if not st or st["n"] == 0 or math.isnan(st["mean"]):
        return "–"
    sd = "" if math.isnan(st["std"]) else f" ± {scale * st['std']:.1f}"
    return f"{scale * st['mean']:{'+' if signed else ''}.1f}{sd}"


def render(data: dict) -> str:
    meta, proto, chosen = data["meta"], data["meta"]["protocol"], data["chosen"]
    sets = proto["ood_sets"]
    rows = ["| method | chosen config | val (mnist:val) | ID (mnist test) | " + " | ".join(sets)
            + " | OOD mean | eff. robustness (pts) | ER, end segment extended (pts) | ECE ID ×100 |",
            "|---|---|" + "---|" * (len(sets) + 6)]
    for m, c in chosen.items():
        cfg = ", ".join(f"{k}={v}" for k, v in c["config"].items()) or "preset"
        n_er = c["effective_robustness"]["n"]
        pos = "" if c["er_positions"] == ["inside"] else \
            f" ({'/'.join(c['er_positions'])}; {n_er} of {len(c['seeds'])} seeds inside the frontier's ID range)"
        rows.append(f"| {LABELS.get(m, m)} | {cfg} | {_cell(c['val'])} | {_cell(c['id'])} | "
                    + " | ".join(_cell(c["ood"][s]) for s in sets)
                    + f" | {_cell(c['ood_mean'])} | {_cell(c['effective_robustness'], signed=True)}{pos} | "
                    f"{_cell(c.get('er_extrapolated', {}), signed=True)} | {_cell(c['ece_id'])} |")
    front = ["| seed | " + " | ".join(f"α={p['alpha']:g}" for p in next(iter(data["frontier"].values()), [])) + " |"]
    front.append("|---|" + "---|" * (len(front[0].split("|")) - 3))
    for s, curve in data["frontier"].items():
        front.append(f"| {s} | " + " | ".join(f"{100 * p['id']:.1f} / {100 * p['ood']:.1f}" for p in curve) + " |")
    line = ["| OOD set | r (probit) | slope | runs |", "|---|---|---|---|"]
    line += [f"| {r['dataset']} | {r['r']:.2f} | {r['slope']:.2f} | {r['n']} |" for r in data["on_the_line"]]
    return "\n".join([
        "# Tuned protocol: every method on the same grid budget, chosen on ID validation", "",
        f"Grid {meta['grid']} ({proto['trials_per_method']} trials per method), trial seeds {proto['trial_seeds']}, "
        f"final seeds {proto['final_seeds']}; train {proto['train_set']}, selection on {proto['val_set']} only. "
        f"Overrides: {proto['overrides'] + meta['overrides'] or 'none'}. Machine: {meta['machine']}; 1-min load during the runs "
        f"{meta['load_1min']}" + (f"; wall {meta['wall_s']} s" if "wall_s" in meta else "") + ". Accuracy in % (mean ± std over seeds).", "",
        *rows, "",
        f"Effective robustness = OOD mean − the WiSE-FT frontier of the chosen {proto['frontier_method']} config at the "
        "run's ID accuracy (per seed, then averaged; upper envelope of the α path; NaN outside its ID range). "
        "The next column extends the frontier's end segment (its two highest-ID points) past its range: an "
        "estimate, for runs whose ID accuracy exceeds the fine-tuned endpoint's.", "",
        "WiSE-FT frontier points (ID / OOD mean, %):", "", *front, "",
        "Accuracy on the line: per OOD set, Pearson r of probit(OOD acc) with probit(ID acc) over every run above "
        "(trials and finals).", "", *line, "", f"Outcome: {data['outcome']}", ""])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--grid", default=str(ROOT / "tracer_core" / "configs" / "grids" / "tuning_grid.json"))
    ap.add_argument("--methods", nargs="+", default=None)
    ap.add_argument("--set", action="append", default=[], help="extra overrides for every run")
    ap.add_argument("--jobs", type=int, default=1)
    ap.add_argument("--threads", type=int, default=1, help="train.threads per run")
    ap.add_argument("--out", default=str(ROOT / "bench"))
    ap.add_argument("--quick", action="store_true", help="smoke test: ft+tracer, first trial, 1 seed, 2 steps")
    ap.add_argument("--render", action="store_true")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.render:   # re-summarise the stored runs (no training) and rewrite both files
        data = json.loads((out / "tuning_results.json").read_text())
        data["chosen"] = summarize({"protocol": data["meta"]["protocol"]}, data["trials"], data["frontier"])
        (out / "tuning_results.json").write_text(json.dumps(data, indent=1, default=str))
        (out / "tuning_results.md").write_text(render(data))
        return
    grid = load_grid(Path(args.grid), args.methods or (["ft", "tracer"] if args.quick else None))
    extra = list(args.set)
    if args.quick:   # the first grid point only, one seed, two steps, alpha 0 and 1: checks the plumbing
        for spec in grid["methods"].values():
            spec["grid"] = {k: v[:1] for k, v in spec["grid"].items()}
        grid["protocol"].update(trials_per_method=1, trial_seeds=[0], final_seeds=[0], wise_alphas=[0.0, 1.0])
        extra = QUICK + extra
    base, work = base_overrides(grid["protocol"], extra), out / "tuning_runs"
    load0, t0 = os.getloadavg()[0], time.time()
    tuned = tune(grid, base, work, args.jobs, args.threads)
    curves = frontier(grid, tuned, base, work, args.jobs, args.threads)
    chosen = summarize(grid, tuned, curves)
    summary = {m: {"id": c["id"]["mean"], "ood": c["ood_mean"]["mean"], "er": c["effective_robustness"]["mean"]}
               for m, c in chosen.items()}
    meta = {"grid": Path(args.grid).name, "methods": list(grid["methods"]), "protocol": grid["protocol"],
            "overrides": extra, "jobs": args.jobs, "threads": args.threads, "quick": args.quick,
            "machine": f"{platform.node()} {platform.machine()}, {os.cpu_count()} CPUs",
            "load_1min": [round(load0, 2), round(os.getloadavg()[0], 2)], "wall_s": round(time.time() - t0)}
    data = {"meta": meta, "chosen": chosen, "frontier": {str(s): c for s, c in curves.items()},
            "on_the_line": on_the_line(tuned, grid["protocol"]), "trials": tuned,
            "outcome": outcome_sentence(summary, labels=LABELS)}
    (out / "tuning_results.json").write_text(json.dumps(data, indent=1, default=str))
    (out / "tuning_results.md").write_text(render(data))
    print(render(data))


if __name__ == "__main__":
    main()
