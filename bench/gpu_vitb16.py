"""FLYP and TRACER at ViT-B/16 on one GPU: images/s, TRACER/FLYP step ratio (goal <= 1.4), peak memory.

    python bench/gpu_vitb16.py [--steps 30] [--batches 512,384,256,128] [--workers 8] [--append bench/RESULTS.md]
    python bench/gpu_vitb16.py --quick        # tiny-vit, CPU-sized: checks the script end to end in ~1 min

Prepared for a lent GPU machine; the whole run fits in <= 8 minutes on an H100/H200-class card (two
trainings of --steps steps, model build and one OOM probe each at most). No download happens: ViT-B-16 is
built with random weights (``model.pretrained=none``, the same compute as the OpenAI weights) and the data
are generated JPEGs (256-320 px) read through the file pipeline (DataLoader workers, RandomResizedCrop 224,
pinned memory), bf16 autocast, TF32. The batch is the largest of --batches that TRACER fits (TRACER needs
more memory than FLYP: teacher forward and KD matrices), used for both so the ratio compares like with like.
Step time is the mean of the loop's ``step_time`` over steps >= 2 (the ``data_wait`` column says whether the
loader kept up). Peak memory is ``torch.cuda.max_memory_allocated``.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tracer_core.config import load_preset  # noqa: E402
from tracer_core.training import Hooks, run  # noqa: E402


def make_jpegs(root: Path, n: int, lo: int, hi: int, classes: int = 10) -> None:
    rng = np.random.default_rng(0)
    for i in range(n):
        d = root / f"c{i % classes}"
        d.mkdir(parents=True, exist_ok=True)
        w, h = int(rng.integers(lo, hi + 1)), int(rng.integers(lo, hi + 1))
        yy, xx = np.mgrid[0:h, 0:w]
        base = np.stack([(xx * (i % 7 + 1)) % 256, (yy * (i % 5 + 1)) % 256, (xx + yy) % 256], -1)
        Image.fromarray(np.clip(base + rng.integers(-20, 20, (h, w, 3)), 0, 255).astype(np.uint8)).save(
            d / f"{i:05d}.jpg", quality=90)


class Rec(Hooks):
    def __init__(self):
        self.rows = []

    def on_step(self, step, scalars):
        self.rows.append((step, scalars[("step_time", "")], scalars[("data_wait", "")]))


def train(preset: str, root: Path, batch: int, args) -> dict:
    sets = [f"model.name={args.model}", "model.pretrained=none", "data.train_set=imagefolder", f"data.path={root}",
            'data.eval_sets=["imagefolder"]', "data.max_eval_samples=64", f"data.batch_size={batch}",
            f"data.eval_batch_size={min(batch, 256)}", f"data.num_workers={args.workers}", f"train.steps={args.steps}",
            "train.eval_at_start=false", "train.similarity_probe=0", "train.save_final=false",
            f"train.device={args.device}", "optim.lr=1e-5", "optim.warmup_steps=5"]
    cuda = torch.cuda.is_available() and args.device != "cpu"
    if cuda:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    rec, t0 = Rec(), time.perf_counter()
    summary = run(load_preset(preset, sets), rec)
    later = [r for r in rec.rows if r[0] >= 2]
    return {"preset": preset, "batch": batch, "status": summary.status, "wall_s": time.perf_counter() - t0,
            "step_s": statistics.mean(r[1] for r in later), "data_wait_s": statistics.mean(r[2] for r in later),
            "images_per_s": summary.images_per_s,
            "peak_gib": torch.cuda.max_memory_allocated() / 2 ** 30 if cuda else float("nan")}


def largest_fitting(root: Path, batches: list[int], args) -> int:
    """The largest batch for which 3 TRACER steps run without CUDA out-of-memory."""
    probe = argparse.Namespace(**{**vars(args), "steps": 3})
    for b in batches:
        try:
            train("tracer", root, b, probe)
            return b
        except torch.cuda.OutOfMemoryError:
            print(f"batch {b}: out of memory, trying smaller", flush=True)
            torch.cuda.empty_cache()
    raise SystemExit(f"none of the batch sizes {batches} fits")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="tiny-vit, small batches, CPU-sized (script check)")
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--batches", default="512,384,256,128")
    ap.add_argument("--workers", type=int, default=min(12, os.cpu_count() or 1))
    ap.add_argument("--images", type=int, default=0, help="generated JPEGs (default: 2 x the largest batch)")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--append", default="", help="append a markdown section to this file (e.g. bench/RESULTS.md)")
    ap.add_argument("--json", default="", help="also write the results as JSON here")
    args = ap.parse_args()
    args.model = "tiny-vit" if args.quick else "ViT-B-16"
    if args.quick:
        args.steps, args.batches, args.workers = min(args.steps, 6), "16,8", min(args.workers, 2)
    batches = [int(b) for b in args.batches.split(",")]
    n = args.images or 2 * max(batches)
    card = torch.cuda.get_device_name() if torch.cuda.is_available() and args.device != "cpu" else "CPU"
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "jpegs"
        t0 = time.perf_counter()
        make_jpegs(root, n, 64 if args.quick else 256, 96 if args.quick else 320)
        print(f"{n} JPEGs in {time.perf_counter() - t0:.0f} s; card {card}", flush=True)
        batch = largest_fitting(root, batches, args) if len(batches) > 1 and card != "CPU" else batches[0]
        res = [train(p, root, batch, args) for p in ("flyp", "tracer")]
    ratio = res[1]["step_s"] / res[0]["step_s"]
    lines = [f"\n## {args.model} FLYP vs TRACER on {card} (`bench/gpu_vitb16.py{' --quick' if args.quick else ''}`)\n",
             f"Batch {batch} ({'largest of ' + str(batches) + ' that TRACER fits' if card != 'CPU' else 'no probe on CPU'}), "
             f"{args.steps} steps, {args.workers} loader "
             f"workers, generated JPEGs, bf16 autocast on CUDA, random init.\n",
             "| method | step (s) | images/s | blocked on data (s/step) | peak memory (GiB) |", "|---|---|---|---|---|"]
    lines += [f"| {r['preset']} | {r['step_s']:.3f} | {r['images_per_s']:.0f} | {r['data_wait_s']:.4f} | "
              f"{r['peak_gib']:.1f} |" for r in res]
    lines.append(f"\nTRACER/FLYP step ratio: **{ratio:.2f}** (goal <= 1.4).\n")
    text = "\n".join(lines)
    print(text)
    if args.append:
        with open(args.append, "a") as f:
            f.write(text)
    if args.json:
        Path(args.json).write_text(json.dumps({"card": card, "batch": batch, "ratio": ratio, "runs": res}, indent=2))


if __name__ == "__main__":
    main()
