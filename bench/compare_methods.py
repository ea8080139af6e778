"""Every method in the field on the default scenario: accuracy, calibration and cost per step.

Accuracy: each preset x seed through the CLI (`python -m tracer_core train --preset P --set
train.seed=S --json --no-store`), so every number is what a user reproduces with the same command.
Runs may go in parallel (--jobs); each result is cached as JSON under --work (reruns resume).

Cost: time per training step, measured in ONE process with the methods interleaved step by step
(round r runs the loop's own `_train_step` r of every method, device synchronised); the ratio to FLYP
is the median of the per-round paired ratios, so a shared machine's load drifts cancel. On a busy CPU,
`--cost-clock process` (this process's CPU time) is the contention-robust variant. The accuracy runs
are not used for timing (they may run in parallel).

    python bench/compare_methods.py [--seeds 0 1 2] [--jobs 4] [--set train.device=cuda]   # table
    python bench/compare_methods.py --cost-only --set train.device=cpu --set train.threads=2
    python bench/compare_methods.py --cost-only --cost-clock process --cost-tag cpu_cputime --set train.threads=1
    python bench/compare_methods.py --render                   # rebuild the markdown from saved JSON

Writes bench/compare_methods.md; the raw results go to --data (compare_methods.json,
compare_methods_cost_<cpu|cuda>.json, per-run JSON under compare_methods_runs/).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "bench"
PRESETS = ["zeroshot", "ft", "lp", "lpft", "flyp", "l2sp", "wiseft", "carot", "tracer", "ft2b", "grace"]
SETS = ["mnist", "colored_mnist", "corrupted_mnist", "sklearn_digits", "heldout_fonts"]
SLOW_FIRST = ["grace", "ft2b", "carot", "tracer", "flyp", "l2sp", "lpft", "wiseft", "ft", "lp", "zeroshot"]
TRACER_BUDGET = 1.4
sys.path.insert(0, str(ROOT))      # the cost measurement imports tracer_core in process


# -- accuracy runs through the CLI ----------------------------------------------------------------

def run_cli(preset: str, seed: int, extra: list[str], work: Path, threads: int) -> dict:
    path = work / f"{preset}_s{seed}.json"
    if path.exists():
        return json.loads(path.read_text())
    from bench.common import train_cli        # the shared `train --json --no-store` runner
    result = train_cli(preset, [f"train.seed={seed}", *extra], env={"OMP_NUM_THREADS": str(threads)})
    result["process_s"] = round(result["process_s"], 2)
    path.write_text(json.dumps(result))
    return result


def accuracy_runs(presets, seeds, extra, work: Path, jobs: int, threads: int) -> dict:
    work.mkdir(parents=True, exist_ok=True)
    order = [p for p in SLOW_FIRST if p in presets] + [p for p in presets if p not in SLOW_FIRST]
    tasks = [(p, s) for p in order for s in seeds]          # longest first: better packing in parallel

    def one(task):
        p, s = task
        try:
            r = run_cli(p, s, extra, work, threads)
            print(f"{p} seed {s}: " + ", ".join(f"{k} {v['accuracy']:.3f}" for k, v in r["final_eval"].items()), flush=True)
            return task, r
        except Exception as e:   # keep the other runs; the table marks what is missing
            print(f"FAILED {p} seed {s}: {e}", flush=True)
            return task, None

    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        done = dict(pool.map(one, tasks))
    return {p: [done[(p, s)] for s in seeds if done.get((p, s))] for p in presets}


# -- interleaved per-step cost, in process ------------------------------------------------------

def step_costs(presets, extra, steps: int, clock: str = "wall") -> dict:
    """Per-step cost of each preset, measured step by step in turn (round r runs step r of every method).

    ``ratio_vs_flyp`` is the median over rounds of t_method(r) / t_flyp(r): paired within a round, so
    slow drifts of a shared machine's load cancel. clock "wall" = perf_counter (device-synchronised),
    "process" = this process's CPU time (all threads; robust to other processes on a CPU).
    """
    import torch

    from tracer_core.config import load_preset
    from tracer_core.training.loop import _train_step
    from tracer_core.training.setup import build_parts

    # one tiny eval set: setup cost only; the eval sets do not enter the step
    # train.steps = warm-up (2) + timed steps: schedules and LP-FT's stage switch scale to the short run
    over = extra + ['data.eval_sets=["mnist"]', "data.max_eval_samples=16", f"train.steps={steps + 2}"]
    parts = {p: build_parts(load_preset(p, over)) for p in presets if p != "zeroshot"}
    sync = torch.cuda.synchronize if any(x.device.type == "cuda" for x in parts.values()) else (lambda: None)
    now = time.perf_counter if clock == "wall" else time.process_time
    times: dict[str, list[float]] = {p: [] for p in parts}
    load = [os.getloadavg()[0]]
    for step in range(steps + 2):
        for p, pa in parts.items():
            sync()
            t0 = now()
            _train_step(pa, step, pa.cfg)
            sync()
            if step >= 2:                   # steps 0-1: warm-up (lazy init, allocator)
                times[p].append(now() - t0)
    load.append(os.getloadavg()[0])
    dev = next(iter(parts.values())).device
    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else (platform.processor() or platform.machine())
    ratio = {p: statistics.median(t / f for t, f in zip(v, times["flyp"])) for p, v in times.items()} \
        if "flyp" in times else {}
    return {"device": f"{dev.type}: {name}", "threads": torch.get_num_threads(), "torch": torch.__version__,
            "clock": clock, "load_avg_1min": load, "overrides": extra,
            "steps_timed": {p: len(v) for p, v in times.items()},
            "mean_s": {p: _trimmed_mean(v) for p, v in times.items()}, "ratio_vs_flyp": ratio}


def _trimmed_mean(values: list[float], cut: float = 0.1) -> float:
    """Mean of the middle 80 %: robust to load spikes, yet it still averages LP-FT's two stages."""
    v = sorted(values)
    k = int(len(v) * cut)
    return statistics.mean(v[k:len(v) - k] or v)


# -- the markdown ----------------------------------------------------------------------------------

def _fmt(vals, scale=100.0, digits=1) -> str:
    vals = [v * scale for v in vals if v is not None]
    if not vals:
        return "–"
    sd = statistics.stdev(vals) if len(vals) > 1 else 0.0
    return f"{statistics.mean(vals):.{digits}f} ± {sd:.{digits}f}"


def _cost_cells(cost: dict | None, preset: str) -> str:
    if not cost or preset not in cost["mean_s"]:
        return "–"
    ratio = _ratio(cost, preset)
    ms = 1000 * cost["mean_s"][preset]
    return f"{ratio:.2f}× ({ms:.0f} ms)" if ratio is not None else f"{ms:.0f} ms"


def _ratio(cost: dict, preset: str):
    """Paired per-round median ratio when recorded, else the ratio of the mean step times."""
    if cost.get("ratio_vs_flyp"):
        return cost["ratio_vs_flyp"].get(preset)
    base = cost["mean_s"].get("flyp")
    return cost["mean_s"][preset] / base if base else None


def _metric(run: dict, dataset: str, key: str):
    return run["final_eval"].get(dataset, {}).get(key)


def _mean(values: list):
    return None if any(v is None for v in values) else statistics.mean(values)


def accuracy_table(results: dict, cost: dict | None) -> str:
    head = ("| method | " + " | ".join(f"{s}{' (ID)' if i == 0 else ''}" for i, s in enumerate(SETS))
            + " | OOD mean | ECE ID | ECE OOD mean | time/step vs FLYP |")
    rows = [head, "|---|" + "---|" * (len(SETS) + 4)]
    for preset, runs in results.items():
        if not runs:
            rows.append(f"| {preset} | " + " | ".join("–" for _ in range(len(SETS) + 3)) + f" | {_cost_cells(cost, preset)} |")
            continue
        cells = [_fmt([_metric(r, s, "accuracy") for r in runs]) for s in SETS]
        ood = [_mean([_metric(r, s, "accuracy") for s in SETS[1:]]) for r in runs]
        ece_id = [_metric(r, SETS[0], "ece") for r in runs]
        ece_ood = [_mean([_metric(r, s, "ece") for s in SETS[1:]]) for r in runs]
        rows.append(f"| {preset} | " + " | ".join(cells) + f" | {_fmt(ood)} | {_fmt(ece_id)} | {_fmt(ece_ood)} | "
                    f"{_cost_cells(cost, preset)} |")
    return "\n".join(rows)


def cost_table(cost: dict) -> str:
    rows = ["| method | ms / step | × FLYP |", "|---|---|---|"]
    for p, sec in cost["mean_s"].items():
        r = _ratio(cost, p)
        rows.append(f"| {p} | {1000 * sec:.1f} | {r:.2f} |" if r is not None else f"| {p} | {1000 * sec:.1f} | – |")
    ratio = _ratio(cost, "tracer")
    if ratio is not None:
        verdict = "within" if ratio <= TRACER_BUDGET else "ABOVE"
        rows.append(f"\nTRACER / FLYP = {ratio:.2f} ({verdict} the {TRACER_BUDGET}× budget; one extra teacher forward "
                    f"without gradients is the floor, ≈1.33× when compute-bound).")
    clock = {"wall": "wall clock", "process": "process CPU time"}.get(cost.get("clock", "wall"))
    how = ("median of per-round paired ratios" if cost.get("ratio_vs_flyp")
           else "ratio of trimmed means, methods interleaved in blocks")
    load = cost.get("load_avg_1min")
    rows.append(f"\nDevice: {cost['device']}, {cost['threads']} torch threads, torch {cost['torch']}; {clock}; "
                f"{min(cost['steps_timed'].values())} timed steps per method after 2 warm-up steps; ms = trimmed mean "
                f"(middle 80 %); × FLYP = {how}"
                + (f"; 1-min load average {load[0]:.1f} → {load[1]:.1f}" if load else "")
                + f"; overrides {cost['overrides'] or 'none'}.")
    return "\n".join(rows)


def _from_cache(work: Path) -> dict | None:
    """Results of an interrupted bench (only the per-run cache was written)."""
    files = sorted(work.glob("*_s*.json")) if work.exists() else []
    if not files:
        return None
    results: dict[str, list] = {}
    for f in files:
        preset, seed = f.stem.rsplit("_s", 1)
        results.setdefault(preset, []).append(json.loads(f.read_text()))
    seeds = sorted({int(f.stem.rsplit("_s", 1)[1]) for f in files})
    meta = {"seeds": f"{seeds} (interrupted run: per-method seed counts may differ)", "overrides": [],
            "jobs": "several", "device_kind": "cuda" if (work.parent / "compare_methods_cost_cuda.json").exists() else "cpu",
            "device": "see the cost section"}
    return {"meta": meta, "results": {p: results[p] for p in PRESETS if p in results}}


def render(out: Path, data: Path, notes: Path | None = None) -> str:
    acc_path = data / "compare_methods.json"
    acc = json.loads(acc_path.read_text()) if acc_path.exists() else _from_cache(data / "compare_methods_runs")
    costs = {p.stem[len("compare_methods_cost_"):]: json.loads(p.read_text())
             for p in sorted(data.glob("compare_methods_cost_*.json"))}
    parts = ["# Every method on the default scenario", ""]
    if acc:
        meta = acc["meta"]
        dev_cost = costs.get(meta["device_kind"])
        parts += [f"Accuracy in % and ECE ×100 (mean ± std over seeds {meta['seeds']}); default presets, embedded "
                  f"tiny-vit checkpoint, 300 steps, batch 64; overrides {meta['overrides'] or 'none'}. "
                  f"Device: {meta['device']}. Time per step: interleaved in-process timing on the same device "
                  f"(see below), not the accuracy runs ({meta['jobs']} ran in parallel).", "",
                  accuracy_table(acc["results"], dev_cost), ""]
    for kind, cost in costs.items():
        parts += [f"## Per-step cost ({kind})", "", cost_table(cost), ""]
    if notes and notes.exists():
        parts += [notes.read_text().strip(), ""]
    parts += ["FT2B is a reconstruction from the paper's abstract (peer_methods.md part A); GRACE is reconstructed "
              "from paper notes and an unofficial re-implementation with tiny-model settings (3 PGD steps instead "
              "of 10, LoRA rank 8, AWP rank 2); see the presets' descriptions and the method modules.", ""]
    text = "\n".join(parts)
    out.write_text(text)
    return text


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    ap.add_argument("--presets", nargs="+", default=PRESETS)
    ap.add_argument("--set", action="append", default=[])
    ap.add_argument("--jobs", type=int, default=1, help="accuracy runs in parallel")
    ap.add_argument("--threads", type=int, default=2, help="OMP threads per accuracy run")
    ap.add_argument("--data", default=str(BENCH), help="folder of the JSON results (read by --render)")
    ap.add_argument("--work", default="", help="per-run JSON cache (default DATA/compare_methods_runs)")
    ap.add_argument("--out", default=str(BENCH / "compare_methods.md"))
    ap.add_argument("--cost-steps", type=int, default=40)
    ap.add_argument("--cost-clock", choices=["wall", "process"], default="wall")
    ap.add_argument("--cost-tag", default="", help="suffix of the cost JSON (default: cpu or cuda)")
    ap.add_argument("--notes", default="", help="a markdown file appended to the report (e.g. a profile)")
    ap.add_argument("--cost-only", action="store_true")
    ap.add_argument("--no-cost", action="store_true")
    ap.add_argument("--render", action="store_true")
    args = ap.parse_args()
    out, data = Path(args.out), Path(args.data)
    data.mkdir(parents=True, exist_ok=True)
    kind = "cuda" if any(s.startswith("train.device=cuda") for s in args.set) else "cpu"
    if not args.render and not args.no_cost:
        cost = step_costs(args.presets, args.set, args.cost_steps, args.cost_clock)
        (data / f"compare_methods_cost_{args.cost_tag or kind}.json").write_text(json.dumps(cost, indent=1))
        print(cost_table(cost), flush=True)
    if not args.render and not args.cost_only:
        work = Path(args.work or data / "compare_methods_runs")
        results = accuracy_runs(args.presets, args.seeds, args.set, work, args.jobs, args.threads)
        device = kind
        if kind == "cuda":
            import torch
            device = f"one {torch.cuda.get_device_name()} (bf16 autocast), torch {torch.__version__}"
        meta = {"seeds": args.seeds, "overrides": args.set, "jobs": args.jobs, "device_kind": kind,
                "device": device, "host": platform.node()}
        (data / "compare_methods.json").write_text(json.dumps({"meta": meta, "results": results}, indent=1))
    print(render(out, data, Path(args.notes) if args.notes else None))


if __name__ == "__main__":
    main()
