"""Endless seeded batches of (images, caption tokens, labels) for FLYP-style fine-tuning.

Captions are one randomly chosen class-prompt template per image (the FLYP CSV holds one row per
(image, template), so a random row is a random template), or the dataset's own caption when it has one.
Same-class pairs in a batch stay negatives, as in the reference.

In-memory sets (the embedded digits) are indexed in-process here; file-backed sets stream through
DataLoader worker processes (data/loader.py: decode, train augmentation, tokenisation off the training
process) with the same draws, so both paths give the same permutation, labels and captions.
"""
from __future__ import annotations

from typing import Iterator

import torch

from ..data.base import take
from ..data.loader import FileBatches, resolve_workers
from ..methods.base import Batch


def _template_tokens(dataset, tokenizer) -> torch.Tensor:
    """(C, T, L) tokens of every template filled with every class name; tokenised once."""
    texts = [t.format(c) for c in dataset.classnames for t in dataset.templates]
    tok = tokenizer(texts)
    return tok.view(len(dataset.classnames), len(dataset.templates), -1)


def batch_iterator(dataset, tokenizer, batch_size: int, seed: int, device, rank: int = 0,
                   world_size: int = 1, num_workers: int = -1, augment: bool = True,
                   channels_last: bool = False) -> Iterator[Batch]:
    """Reshuffle every epoch with a seeded generator; drop the last partial batch (a contrastive
    batch needs >= 2 pairs and constant B keeps the per-step statistics comparable).

    ``batch_size`` is the global batch. Under torchrun every rank draws the same permutation and template
    choices and keeps its contiguous shard [rank*b, (rank+1)*b), b = batch_size / world_size, so the ranks'
    shards concatenated in rank order are the single-process batch (training/distributed.py).

    File-backed sets (``tensors()`` is None) get a :class:`FileBatches` (``num_workers``: -1 = auto;
    ``augment``: the reference's train crop + flip); in-memory sets ignore those and ``channels_last``.
    """
    n = len(dataset)
    if n < batch_size:
        raise ValueError(f"dataset {dataset.name!r} has {n} samples, fewer than batch_size={batch_size}")
    table = _template_tokens(dataset, tokenizer) if dataset.captions is None else None
    if dataset.tensors() is None:
        return FileBatches(dataset, tokenizer, table, batch_size, seed, device, rank, world_size,
                           resolve_workers(num_workers, dataset), augment, channels_last)
    return _memory_batches(dataset, tokenizer, table, batch_size, seed, device, rank, world_size)


def _memory_batches(dataset, tokenizer, table, batch_size, seed, device, rank, world_size) -> Iterator[Batch]:
    gen = torch.Generator().manual_seed(seed)
    shard = slice(rank * (batch_size // world_size), (rank + 1) * (batch_size // world_size))
    n = len(dataset)
    while True:
        order = torch.randperm(n, generator=gen)
        for start in range(0, n - batch_size + 1, batch_size):
            idx = order[start:start + batch_size][shard]                        # (b,) this rank's rows
            images, labels = take(dataset, idx)
            if table is not None:
                t_idx = torch.randint(table.shape[1], (batch_size,), generator=gen)[shard]   # drawn globally
                tokens = table[labels, t_idx]                                   # (b, L)
            else:
                tokens = tokenizer([dataset.captions[int(i)] for i in idx])
            yield Batch(images.to(device, non_blocking=True), tokens.to(device), labels.to(device))
