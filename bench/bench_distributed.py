"""Cost of data-parallel training on this machine: one process vs N torchrun ranks (prints, never asserts).

    python bench/bench_distributed.py [--preset tracer] [--nproc 2] [--steps 60]

Runs the CLI exactly as a user would, once as one process with N torch threads and once as N gloo ranks
with one thread each, on the same global batch (data.batch_size, default 64), and prints the mean step time
of steps 2.. (the loop's ``step_time`` series summary, which excludes evaluation) side by side. On a CPU the
ranks share the same cores, so this measures the synchronisation overhead (feature all-gather, gradient
all-reduce of every parameter, the loss and stop-flag reductions), not a speed-up; on N GPUs each rank has
its own device.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from bench.common import train_cli  # noqa: E402  (the shared `train --json --no-store` runner)


def run(preset: str, nproc: int, steps: int, threads: int) -> dict:
    launcher = [sys.executable] + (["-m", "torch.distributed.run", "--nproc_per_node", str(nproc)] if nproc > 1 else [])
    sets = [f"train.steps={steps}", f"train.threads={threads}", "train.eval_at_start=false",
            'data.eval_sets=["mnist"]', "data.max_eval_samples=64", "train.similarity_probe=0", "train.device=cpu"]
    return train_cli(preset, sets, launcher=launcher, env={"OMP_NUM_THREADS": str(threads)})


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--preset", default="tracer")
    ap.add_argument("--nproc", type=int, default=2)
    ap.add_argument("--steps", type=int, default=60)
    args = ap.parse_args()
    one = run(args.preset, 1, args.steps, args.nproc)
    many = run(args.preset, args.nproc, args.steps, 1)
    t1 = one["summaries"]["step_time/"]["auc_normalized"]
    tn = many["summaries"]["step_time/"]["auc_normalized"]
    print(f"{args.preset}, global batch 64, {args.steps} steps, {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}")
    print(f"  1 process x {args.nproc} threads : {t1 * 1000:7.1f} ms/step")
    print(f"  {args.nproc} ranks   x 1 thread  : {tn * 1000:7.1f} ms/step   (ratio {tn / t1:.2f})")


if __name__ == "__main__":
    main()
