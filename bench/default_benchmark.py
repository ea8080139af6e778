"""The embedded-default benchmark table: zero-shot, FT, FLYP, CaRot, TRACER (WMA), TRACER (EMA every step)
on MNIST (ID) and each OOD set, 3 seeds, mean ± std, plus KL(teacher||student) summaries.

Every number comes from the CLI (`python -m tracer_core train --preset P --set train.seed=S --json`),
so the table is what a user reproduces with the same commands.

    python bench/default_benchmark.py [--seeds 0 1 2] [--set train.device=cuda] [--out bench/default_benchmark.md]
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PRESETS = ["zeroshot", "ft", "flyp", "carot", "tracer", "tracer_ema"]
SETS = ["mnist", "colored_mnist", "corrupted_mnist", "sklearn_digits", "heldout_fonts"]


def run_cli(preset: str, seed: int, extra: list[str]) -> dict:
    cmd = [sys.executable, "-m", "tracer_core", "train", "--preset", preset, "--json", "--no-store",
           "--set", f"train.seed={seed}"] + [a for s in extra for a in ("--set", s)]
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def fmt(values: list[float], scale: float = 100.0, digits: int = 1) -> str:
    vals = [v * scale for v in values if v is not None]
    if not vals:
        return "–"
    sd = statistics.stdev(vals) if len(vals) > 1 else 0.0
    return f"{statistics.mean(vals):.{digits}f} ± {sd:.{digits}f}"


def table(results: dict) -> str:
    head = "| method | " + " | ".join(SETS) + " | OOD mean | s/step |\n|---|" + "---|" * (len(SETS) + 2)
    rows = [head]
    for preset, runs in results.items():
        cells = [fmt([r["final_eval"][s]["accuracy"] for r in runs]) for s in SETS]
        ood = [statistics.mean(r["final_eval"][s]["accuracy"] for s in SETS[1:]) for r in runs]
        sps = [1 / r["steps_per_s"] for r in runs if r["steps_per_s"]]
        rows.append(f"| {preset} | " + " | ".join(cells) + f" | {fmt(ood)} | {fmt(sps, 1, 3) if sps else '–'} |")
    kl = ["", "| teacher run | KL last | KL normalised AUC | KL half-life step |", "|---|---|---|---|"]
    for preset, runs in results.items():
        sums = [r["summaries"].get("teacher_student_kl/combined") for r in runs]
        if not all(sums):
            continue
        kl.append(f"| {preset} | " + " | ".join(
            fmt([s[k] for s in sums], 1, 5) if k != "half_life_step" else
            (fmt([s[k] for s in sums], 1, 0) + f" ({sum(s[k] is None for s in sums)}/{len(sums)} never halve)")
            for k in ("last_value", "auc_normalized", "half_life_step")) + " |")
    return "\n".join(rows + kl)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    ap.add_argument("--presets", nargs="+", default=PRESETS)
    ap.add_argument("--set", action="append", default=[])
    ap.add_argument("--out", default=str(ROOT / "bench" / "default_benchmark.md"))
    args = ap.parse_args()
    results = {}
    for preset in args.presets:
        results[preset] = []
        for seed in args.seeds:
            r = run_cli(preset, seed, args.set)
            results[preset].append(r)
            print(f"{preset} seed {seed}: " + ", ".join(f"{k} {v['accuracy']:.3f}" for k, v in r["final_eval"].items()),
                  flush=True)
    md = table(results)
    note = (f"\nAccuracy in % (mean ± std over seeds {args.seeds}); overrides: {args.set or 'none'}; "
            f"host: {platform.node()} ({platform.processor() or platform.machine()}).\n")
    Path(args.out).write_text(md + "\n" + note)
    Path(args.out).with_suffix(".json").write_text(json.dumps(results, indent=1))
    print(md + note)


if __name__ == "__main__":
    main()
