"""The file-image pipeline: torch DataLoader worker processes decode and transform, the GPU only computes.

Used for file-backed sets (``FileImageSet``: image folders, FLYP TSV/CSV, declared sets); the embedded
digit sets are tensors in memory and keep their in-process path (training/batches.py).

* Transforms (spec §1.1, the reference's ``clip/clip.py: _transform``): train = RandomResizedCrop(S,
  scale 0.9-1.0, bicubic) + horizontal flip; eval = resize the short side to S (bicubic) + centre crop
  (exactly ``data.files.load_image``). Workers return uint8 (3, S, S): 4x less pinned memory and H2D traffic
  than float; the /255 happens on the device.
* Determinism: the batch sampler runs in the main process and draws, from seeded generators, the epoch
  permutation, one template index per row (template-caption sets) and one augmentation seed per row. Every
  torchrun rank draws the same global values and keeps its contiguous shard, so results do not depend on the
  number of workers or ranks: 2 ranks' shards concatenated are the 1-rank batch, augmentation included.
* Unreadable files: a row whose image cannot be decoded is replaced by the next readable image in dataset
  order (with its own label and caption), so every rank keeps the same batch size (the contrastive
  all-gather needs it); the bad index is reported with the batch and counted once per file
  (:attr:`FileBatches.skipped`). Evaluation drops such rows instead (a substitute would bias accuracy).
* Only indices and one batch per worker prefetch slot are ever in memory, never the image set.
"""
from __future__ import annotations

import math
import os
import random
import time
from typing import Iterator, Sequence

import numpy as np
import torch
from PIL import Image

TRAIN_SCALE = (0.9, 1.0)              # spec §1.1 RandomResizedCrop scale
TRAIN_RATIO = (3 / 4, 4 / 3)          # torchvision's default aspect-ratio range
MAX_SUBSTITUTES = 64                  # consecutive unreadable files before the set is declared broken
AUG_SEED_OFFSET = 0x5EED              # augmentation seeds come from their own stream (seed + offset)
PREFETCH_BATCHES = 4                  # per worker: ~4 x workers batches decoded ahead of the step


def resolve_workers(num_workers: int, dataset) -> int:
    """data.num_workers: -1 (auto) = 0 for in-memory sets, min(8, CPUs) for file-backed sets."""
    if num_workers >= 0:
        return num_workers
    return 0 if dataset.tensors() is not None else min(8, os.cpu_count() or 1)


def open_rgb(path: str, crop_border: int = 0) -> Image.Image:
    """Decode one file to RGB (grey -> 3 channels); ``crop_border`` px cut off every edge (ObjectNet: 2)."""
    with Image.open(path) as im:
        im = im.convert("RGB")
    if crop_border:
        im = im.crop((crop_border, crop_border, im.size[0] - crop_border, im.size[1] - crop_border))
    return im


def to_uint8(im: Image.Image) -> torch.Tensor:
    """PIL RGB -> (3, H, W) uint8."""
    return torch.from_numpy(np.array(im, dtype=np.uint8)).permute(2, 0, 1).contiguous()


def eval_transform(im: Image.Image, size: int) -> torch.Tensor:
    """Short side -> size (bicubic), centre crop -> (3, size, size) uint8; /255 equals files.load_image."""
    w, h = im.size
    scale = size / min(w, h)
    nw, nh = max(size, round(w * scale)), max(size, round(h * scale))
    im = im.resize((nw, nh), Image.Resampling.BICUBIC)
    left, top = (nw - size) // 2, (nh - size) // 2
    return to_uint8(im.crop((left, top, left + size, top + size)))


def crop_box(w: int, h: int, rng: random.Random) -> tuple[int, int, int, int]:
    """RandomResizedCrop's box (left, top, width, height): area fraction U(0.9, 1), log-uniform aspect ratio,
    10 tries, then the whole image clipped to the ratio range (torchvision's fallback)."""
    area = w * h
    lo, hi = math.log(TRAIN_RATIO[0]), math.log(TRAIN_RATIO[1])
    for _ in range(10):
        target = area * rng.uniform(*TRAIN_SCALE)
        ratio = math.exp(rng.uniform(lo, hi))
        cw, ch = round(math.sqrt(target * ratio)), round(math.sqrt(target / ratio))
        if 0 < cw <= w and 0 < ch <= h:
            return rng.randint(0, w - cw), rng.randint(0, h - ch), cw, ch
    ratio = w / h
    if ratio < TRAIN_RATIO[0]:
        cw, ch = w, round(w / TRAIN_RATIO[0])
    elif ratio > TRAIN_RATIO[1]:
        cw, ch = round(h * TRAIN_RATIO[1]), h
    else:
        cw, ch = w, h
    return (w - cw) // 2, (h - ch) // 2, cw, ch


def train_transform(im: Image.Image, size: int, seed: int) -> torch.Tensor:
    """RandomResizedCrop(size, scale 0.9-1, bicubic) + horizontal flip (p 0.5), drawn from ``seed`` ->
    (3, size, size) uint8. A per-row seed makes the result independent of which worker decodes it."""
    rng = random.Random(seed)
    left, top, cw, ch = crop_box(im.size[0], im.size[1], rng)
    im = im.resize((size, size), Image.Resampling.BICUBIC, box=(left, top, left + cw, top + ch))
    if rng.random() < 0.5:
        im = im.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    return to_uint8(im)


class _Reader(torch.utils.data.Dataset):
    """Worker-side view of a FileImageSet: ``reader[(index, aug_seed, template)]`` -> one decoded row.

    ``aug_seed < 0`` means the eval transform. Returns (image uint8 (3,S,S) or None, index used, template,
    bad indices met). ``substitute`` replaces an unreadable file by the next readable one (training)."""

    def __init__(self, dataset, substitute: bool):
        self.ds, self.substitute = dataset, substitute
        self.size, self.border = dataset.image_size, int(getattr(dataset, "crop_border", 0) or 0)

    def __len__(self) -> int:
        return len(self.ds)

    def decode(self, index: int, aug_seed: int) -> torch.Tensor:
        im = open_rgb(self.ds.paths[index], self.border)
        return train_transform(im, self.size, aug_seed) if aug_seed >= 0 else eval_transform(im, self.size)

    def __getitem__(self, req: tuple[int, int, int]):
        index, aug_seed, template = req
        bad = []
        tries = MAX_SUBSTITUTES if self.substitute else 1
        for k in range(tries):
            i = (index + k) % len(self.ds)
            try:
                return self.decode(i, aug_seed), i, template, bad
            except Exception:     # PIL raises OSError, UnidentifiedImageError, SyntaxError, ValueError...
                bad.append(i)
        if not self.substitute:
            return None, index, template, bad
        from .base import DataError
        raise DataError(f"dataset {self.ds.name!r}: {tries} consecutive images from {self.ds.paths[index]} "
                        f"on cannot be read; check the files (e.g. `python -c \"from PIL import Image; "
                        f"Image.open('{self.ds.paths[index]}').load()\"`)")


class _Collate:
    """Worker-side collation: stack images, look up labels of the rows actually used, tokenise captions.

    ``table`` (C, T, L) tokens of every template x class (template-caption sets) or None, in which case the
    set's own captions are tokenised here, in the worker, off the training process."""

    def __init__(self, dataset, tokenizer, table: torch.Tensor | None):
        self.labels, self.captions, self.tokenizer, self.table = dataset.labels, dataset.captions, tokenizer, table

    def __call__(self, rows):
        bad = sorted({i for r in rows for i in r[3]})
        rows = [r for r in rows if r[0] is not None]
        if not rows:
            return None, None, None, bad
        images = torch.stack([r[0] for r in rows])                      # (b, 3, S, S) uint8
        idx = torch.tensor([r[1] for r in rows], dtype=torch.long)
        labels = self.labels[idx]                                         # (b,)
        if self.tokenizer is None:
            tokens = None
        elif self.table is not None:
            tokens = self.table[labels, torch.tensor([r[2] for r in rows], dtype=torch.long)]   # (b, L)
        else:
            tokens = self.tokenizer([self.captions[i] for i in idx.tolist()])
        return images, tokens, labels, bad


class ShardedBatchSampler:
    """Endless global batches of (index, aug_seed, template) requests, this rank's contiguous shard only.

    Draw order per epoch: randperm(n) from ``gen``; per batch: template indices (B,) from ``gen`` (only for
    template-caption sets, as the in-memory path does), augmentation seeds (B,) from their own generator."""

    def __init__(self, n: int, batch_size: int, seed: int, n_templates: int, augment: bool,
                 rank: int = 0, world_size: int = 1):
        self.n, self.batch_size, self.seed, self.n_templates, self.augment = n, batch_size, seed, n_templates, augment
        b = batch_size // world_size
        self.shard = slice(rank * b, (rank + 1) * b)

    def __iter__(self) -> Iterator[list[tuple[int, int, int]]]:
        gen = torch.Generator().manual_seed(self.seed)
        aug = torch.Generator().manual_seed(self.seed + AUG_SEED_OFFSET)
        B = self.batch_size
        while True:
            order = torch.randperm(self.n, generator=gen)
            for start in range(0, self.n - B + 1, B):
                idx = order[start:start + B]
                t_idx = (torch.randint(self.n_templates, (B,), generator=gen) if self.n_templates
                         else torch.zeros(B, dtype=torch.long))
                seeds = torch.randint(2 ** 31 - 1, (B,), generator=aug) if self.augment else torch.full((B,), -1)
                yield list(zip(idx[self.shard].tolist(), seeds[self.shard].tolist(), t_idx[self.shard].tolist()))


def _worker_init(_worker_id: int) -> None:
    torch.set_num_threads(1)       # decode is PIL (GIL-free C); torch ops in a worker must not oversubscribe


def make_loader(reader, batch_sampler, collate, num_workers: int, pin: bool, persistent: bool):
    return torch.utils.data.DataLoader(
        reader, batch_sampler=batch_sampler, collate_fn=collate, num_workers=num_workers, pin_memory=pin,
        persistent_workers=persistent and num_workers > 0, worker_init_fn=_worker_init if num_workers else None,
        prefetch_factor=PREFETCH_BATCHES if num_workers else None)


def to_device_images(images: torch.Tensor, device, channels_last: bool = False) -> torch.Tensor:
    """(b,3,S,S) uint8 (pinned on CUDA) -> float [0,1] on ``device``; the copy overlaps compute on CUDA."""
    x = images.to(device, non_blocking=True).float().div_(255.0)
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x


class FileBatches:
    """Endless training batches of a file-backed set -> ``methods.base.Batch`` on ``device``.

    ``skipped``: dataset indices met so far that could not be read (each counted once);
    ``last_wait_s``: seconds the last ``next()`` blocked on the loader (0 when the workers keep up)."""

    def __init__(self, dataset, tokenizer, table, batch_size: int, seed: int, device, rank: int = 0,
                 world_size: int = 1, num_workers: int = 0, augment: bool = True, channels_last: bool = False):
        from ..methods.base import Batch
        self._batch_cls, self.device, self.channels_last = Batch, torch.device(device), channels_last
        n_templates = len(dataset.templates) if table is not None else 0
        sampler = ShardedBatchSampler(len(dataset), batch_size, seed, n_templates, augment, rank, world_size)
        self.loader = make_loader(_Reader(dataset, substitute=True), sampler, _Collate(dataset, tokenizer, table),
                                  num_workers, pin=self.device.type == "cuda", persistent=True)
        self.num_workers, self.skipped, self.last_wait_s = num_workers, set(), 0.0
        self._it = None

    def __iter__(self):
        return self

    def __next__(self):
        if self._it is None:
            self._it = iter(self.loader)      # starts the workers (first batch pays their start-up)
        t0 = time.perf_counter()
        images, tokens, labels, bad = next(self._it)
        self.last_wait_s = time.perf_counter() - t0
        self.skipped.update(bad)
        nb = self.device.type == "cuda"
        return self._batch_cls(to_device_images(images, self.device, self.channels_last),
                               tokens.to(self.device, non_blocking=nb), labels.to(self.device, non_blocking=nb))


class SkipCount:
    """Unreadable files met by one evaluation (a set of dataset indices); ``merge`` for torchrun shards."""

    def __init__(self):
        self.indices: set[int] = set()

    def merge(self, other: "SkipCount") -> None:
        self.indices |= other.indices

    def __len__(self) -> int:
        return len(self.indices)


def eval_batches(dataset, lo: int, hi: int, batch_size: int, device, num_workers: int = -1,
                 skipped: SkipCount | None = None) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Rows [lo, hi) in order, in batches -> (images float (b,3,S,S) on ``device``, labels (b,) on the CPU).

    In-memory sets slice their tensors (the previous path, same numbers). File sets stream through a
    DataLoader with the eval transform; unreadable files are dropped and recorded in ``skipped``."""
    tensors = dataset.tensors()
    if tensors is not None:
        for start in range(lo, hi, batch_size):
            end = min(start + batch_size, hi)
            yield tensors[0][start:end].to(device), tensors[1][start:end]
        return
    device = torch.device(device)
    batches = [[(i, -1, 0) for i in range(s, min(s + batch_size, hi))] for s in range(lo, hi, batch_size)]
    loader = make_loader(_Reader(dataset, substitute=False), batches, _Collate(dataset, None, None),
                         resolve_workers(num_workers, dataset), pin=device.type == "cuda", persistent=False)
    for images, _, labels, bad in loader:
        if skipped is not None:
            skipped.indices.update(bad)
        if images is not None:
            yield to_device_images(images, device), labels


def distinct_images(dataset) -> int:
    """Number of distinct images of a set: a FLYP TSV has one row per image x template, and the reference's
    epoch is the *ImageFolder* loader over the images (spec §1.1), so rows sharing a file count once."""
    paths: Sequence[str] | None = getattr(dataset, "paths", None)
    return len(set(paths)) if paths is not None else len(dataset)
