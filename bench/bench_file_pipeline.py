"""The file-image pipeline on this machine (prints, never asserts; results go to bench/RESULTS.md by hand).

    python bench/bench_file_pipeline.py [--images 320] [--workers 2] [--batch 32] [--steps 24]

1. Generates ``--images`` 224-px-class JPEGs (sizes 224-320 px, 8 classes) in a temporary folder.
2. Loader throughput, images/s, with 0 workers (decode in the training process) and with N workers, for the
   train path (RandomResizedCrop + flip at 224, data/loader.py) and the eval path (resize + centre crop).
3. A short tiny-model FLYP training on that folder with 0 and N workers: mean step time, images/s of the
   step and the mean time each step blocked on the loader (the ``data_wait`` series), steps 2.. .

The machine is shared: ``uptime``'s load is printed with every measurement; numbers under load are labelled.
"""
from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def load() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip().split("load average:")[-1].strip()


def make_jpegs(root: Path, n: int, classes: int = 8) -> None:
    rng = np.random.default_rng(0)
    for i in range(n):
        d = root / f"class_{i % classes}"
        d.mkdir(parents=True, exist_ok=True)
        w, h = int(rng.integers(224, 321)), int(rng.integers(224, 321))
        # smooth gradient + noise: JPEG decode cost close to a photo's (pure noise decodes slower)
        yy, xx = np.mgrid[0:h, 0:w]
        base = np.stack([(xx * (i % 7 + 1)) % 256, (yy * (i % 5 + 1)) % 256, (xx + yy) % 256], -1)
        img = np.clip(base + rng.integers(-20, 20, size=(h, w, 3)), 0, 255).astype(np.uint8)
        Image.fromarray(img).save(d / f"{i:05d}.jpg", quality=90)


def tokenizer(texts):
    return torch.zeros(len(texts), 8, dtype=torch.long)


def loader_rate(ds, workers: int, batch: int, n_batches: int) -> float:
    from tracer_core.training.batches import batch_iterator
    it = batch_iterator(ds, tokenizer, batch, seed=0, device="cpu", num_workers=workers, augment=True)
    next(it)                                           # worker start-up and first decode are not the rate
    t0 = time.perf_counter()
    for _ in range(n_batches):
        next(it)
    return batch * n_batches / (time.perf_counter() - t0)


def eval_rate(ds, workers: int, batch: int) -> float:
    from tracer_core.data.loader import eval_batches
    t0 = time.perf_counter()
    n = sum(len(lab) for _, lab in eval_batches(ds, 0, len(ds), batch, "cpu", num_workers=workers))
    return n / (time.perf_counter() - t0)


def train(root: Path, workers: int, batch: int, steps: int) -> dict:
    from tracer_core.config import load_preset
    from tracer_core.training import Hooks, run

    class Rec(Hooks):
        rows: list = []

        def on_step(self, step, scalars):
            self.rows.append((step, scalars[("step_time", "")], scalars[("data_wait", "")]))

    rec = Rec()
    rec.rows = []
    cfg = load_preset("flyp", ["model.pretrained=none", "data.train_set=imagefolder", f"data.path={root}",
                               'data.eval_sets=["imagefolder"]', "data.max_eval_samples=16", f"data.batch_size={batch}",
                               f"data.num_workers={workers}", f"train.steps={steps}", "train.eval_at_start=false",
                               "train.similarity_probe=0", "train.device=cpu", "train.save_final=false"])
    summary = run(cfg, rec)
    later = [r for r in rec.rows if r[0] >= 2]
    return {"step_ms": 1e3 * statistics.mean(r[1] for r in later), "wait_ms": 1e3 * statistics.mean(r[2] for r in later),
            "images_per_s": summary.images_per_s}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=320)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--steps", type=int, default=24)
    args = ap.parse_args()
    from tracer_core.data.files import load_imagefolder
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "jpegs"
        make_jpegs(root, args.images)
        ds = load_imagefolder(str(root), "train", 224, None)
        print(f"{len(ds)} JPEGs, 224-320 px; torch threads {torch.get_num_threads()}")
        for w in (0, args.workers):
            r = loader_rate(ds, w, args.batch, max(2, args.images // args.batch - 2))
            e = eval_rate(ds, w, args.batch)
            print(f"loader, {w} workers: train {r:.0f} images/s, eval {e:.0f} images/s   [load {load()}]")
        for w in (0, args.workers):
            t = train(root, w, args.batch, args.steps)
            print(f"tiny FLYP, batch {args.batch}, {w} workers: step {t['step_ms']:.0f} ms, blocked on data "
                  f"{t['wait_ms']:.1f} ms/step, {t['images_per_s']:.0f} images/s   [load {load()}]")


if __name__ == "__main__":
    main()
