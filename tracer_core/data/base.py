"""Dataset base classes shared by every registered set: images + labels + class names + prompt templates."""
from __future__ import annotations

import random
from typing import Sequence

import numpy as np
import torch
from torch import Tensor


class DataError(ValueError):
    """A dataset cannot be built or read; the message names the dataset or file and the problem."""


class ImageSet(torch.utils.data.Dataset):
    """Base: ``ds[i] -> (image FloatTensor (3,H,W) in [0,1], int label)``.

    ``labels`` (N,) int64 gives every label without decoding images. ``templates`` contain "{}" for the
    class name. ``captions`` is a per-sample caption list (CSV sets, the world) or None, in which case
    captions come from the templates (see :func:`caption_for`).
    """

    name: str
    classnames: list[str]
    templates: list[str]
    labels: Tensor
    captions: list[str] | None = None
    description: str = ""

    def __init__(self, name: str, classnames: Sequence[str], templates: Sequence[str], labels: Tensor,
                 captions: Sequence[str] | None = None, description: str = ""):
        self.name, self.description = name, description
        self.classnames, self.templates = list(classnames), list(templates)
        self.labels = torch.as_tensor(labels, dtype=torch.int64).reshape(-1)
        self.captions = None if captions is None else list(captions)
        if not self.templates or any("{}" not in t for t in self.templates):
            raise DataError(f"dataset {name!r}: every prompt template needs a '{{}}' slot, got {self.templates}")
        if len(self.labels) and (int(self.labels.min()) < 0 or int(self.labels.max()) >= len(self.classnames)):
            raise DataError(f"dataset {name!r}: labels must lie in [0, {len(self.classnames)}), "
                            f"got [{int(self.labels.min())}, {int(self.labels.max())}]")
        if self.captions is not None and len(self.captions) != len(self.labels):
            raise DataError(f"dataset {name!r}: {len(self.captions)} captions for {len(self.labels)} samples")

    @property
    def num_classes(self) -> int:
        return len(self.classnames)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[Tensor, int]:  # pragma: no cover - abstract
        raise NotImplementedError

    def tensors(self) -> tuple[Tensor, Tensor] | None:
        """(images (N,3,H,W) float32 [0,1], labels (N,)) for in-memory sets; None for file-backed ones."""
        return None

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}, n={len(self)}, classes={self.num_classes})"


class TensorImageSet(ImageSet):
    """An in-memory set: images (N,3,H,W) float32 in [0,1] already decoded."""

    def __init__(self, name: str, images: Tensor, labels: Tensor, classnames: Sequence[str],
                 templates: Sequence[str], captions: Sequence[str] | None = None, description: str = ""):
        super().__init__(name, classnames, templates, labels, captions, description)
        images = torch.as_tensor(images, dtype=torch.float32)
        if images.ndim != 4 or images.shape[1] != 3 or images.shape[0] != len(self.labels):
            raise DataError(f"dataset {name!r}: images must be (N,3,H,W) with N={len(self.labels)}, "
                            f"got {tuple(images.shape)}")
        self.images = images

    def __getitem__(self, index: int) -> tuple[Tensor, int]:
        return self.images[index], int(self.labels[index])

    def tensors(self) -> tuple[Tensor, Tensor]:
        return self.images, self.labels

    def subset(self, indices: Tensor, name: str | None = None) -> "TensorImageSet":
        """The samples at ``indices`` (1-D int tensor), same classes and templates."""
        caps = None if self.captions is None else [self.captions[i] for i in indices.tolist()]
        return TensorImageSet(name or self.name, self.images[indices], self.labels[indices], self.classnames,
                              self.templates, caps, self.description)


def _randbelow(rng, n: int) -> int:
    """An int in [0, n) from a random.Random, numpy Generator, torch.Generator or None (module RNG)."""
    if rng is None:
        return random.randrange(n)
    if isinstance(rng, random.Random):
        return rng.randrange(n)
    if isinstance(rng, np.random.Generator):
        return int(rng.integers(n))
    if isinstance(rng, torch.Generator):
        return int(torch.randint(n, (1,), generator=rng))
    raise TypeError(f"rng must be random.Random, numpy Generator, torch.Generator or None, got {type(rng)}")


def caption_for(imageset: ImageSet, index_or_label: int, rng=None) -> str:
    """A caption for contrastive (FLYP-style) training.

    Sets with per-sample captions (``imageset.captions`` not None: CSV, world): ``index_or_label`` is the
    sample index and its own caption is returned. Otherwise it is a class label and one random template
    is filled with that class name.
    """
    i = int(index_or_label)
    if imageset.captions is not None:
        return imageset.captions[i]
    if not 0 <= i < len(imageset.classnames):
        raise DataError(f"dataset {imageset.name!r}: label {i} out of range [0, {len(imageset.classnames)})")
    return imageset.templates[_randbelow(rng, len(imageset.templates))].format(imageset.classnames[i])


def take(dataset: ImageSet, idx) -> tuple[torch.Tensor, torch.Tensor]:
    """Images (n,3,H,W) and labels (n,) at ``idx``: tensor indexing for in-memory sets, else decode each."""
    tensors = dataset.tensors()
    if tensors is not None:
        return tensors[0][idx], tensors[1][idx]
    items = [dataset[int(i)] for i in idx]
    return torch.stack([im for im, _ in items]), torch.tensor([lab for _, lab in items], dtype=torch.long)
