"""The ImageNet family as the reference evaluates it (spec §7): class lists, folder layouts, eval heads.

Torch-free: it only lists folders and reads the shipped facts in ``assets/`` (sources in assets/SOURCES.md).

    family           folders under the set's path          label space (classes)         eval head
    imagenet         <wnid>/ (val, or train)               1000 ImageNet classes          full
    imagenet_v2      0/ .. 999/ (class index)              1000                            full
    imagenet_sketch  <wnid>/                               1000                            full
    imagenet_r       <wnid>/ of its 200-class subset       200                             1000-way logits, restricted to the 200
    imagenet_a       <wnid>/ of its 200-class subset       200                             1000-way logits, restricted to the 200
    objectnet        <objectnet folder>/ (313 on disk)     113 (folders outside skipped)   each logit = max over its ImageNet logits

The label space is fixed per family (a partial tree keeps the full class list: labels stay the ImageNet
indices), so ImageNet-family sets always agree with an ImageNet-family train set. Class names are OpenAI's
(the reference's eval names; its HEAD list differs in 8 names, pitfall P12: we use OpenAI's, as open_clip does).
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

ASSETS = Path(__file__).parent / "assets"
FAMILIES = ("imagenet", "imagenet_v2", "imagenet_sketch", "imagenet_r", "imagenet_a", "objectnet")
TEMPLATE_SETS = {"openai80": "templates_openai80.txt", "reference86": "templates_reference86.txt",
                 "short": "templates_short.txt"}
OBJECTNET_CROP = 2      # px cut from every border before the resize (reference objectnet.crop)


@dataclass(frozen=True)
class EvalHead:
    """How a set's logits come from a head over ``space`` (class names): logit_c = max_{j in groups[c]} z_j.

    A class subset (ImageNet-R/A) has one index per group; ObjectNet groups its mapped ImageNet classes.
    """
    kind: str                              # "subset" | "max"
    space: tuple[str, ...]                 # the head's classes, e.g. the 1000 ImageNet names
    groups: tuple[tuple[int, ...], ...]    # per class of the set: indices into ``space``

    def space_classes(self, index: int) -> list[str]:
        return [self.space[j] for j in self.groups[index]]


def _lines(name: str) -> list[str]:
    with open(ASSETS / name, encoding="utf-8") as f:
        return [line.rstrip("\n") for line in f if line.strip()]


@lru_cache(maxsize=None)
def wnids() -> tuple[str, ...]:
    """The 1000 ImageNet-1k wnids in sorted order (= the class index)."""
    return tuple(_lines("imagenet_wnids.txt"))


@lru_cache(maxsize=None)
def classnames() -> tuple[str, ...]:
    """OpenAI's 1000 ImageNet class names, index-aligned with :func:`wnids`."""
    return tuple(_lines("imagenet_classnames.txt"))


@lru_cache(maxsize=None)
def subset_indices(family: str) -> tuple[int, ...]:
    """ImageNet indices of the 200-class subset of imagenet_r / imagenet_a, ascending."""
    index = {w: i for i, w in enumerate(wnids())}
    return tuple(sorted(index[w] for w in _lines(f"{family}_wnids.txt")))


@lru_cache(maxsize=None)
def objectnet_classes() -> tuple[tuple[str, str, tuple[int, ...]], ...]:
    """(folder, class name, ImageNet indices) for the 113 ObjectNet classes, sorted by folder (= label)."""
    doc = json.loads((ASSETS / "objectnet_classes.json").read_text(encoding="utf-8"))
    return tuple((c["folder"], c["name"], tuple(c["imagenet"])) for c in doc["classes"])


def template_set(name: str) -> list[str]:
    return _lines(TEMPLATE_SETS[name])


def family_classes(family: str) -> tuple[list[str], EvalHead | None]:
    """The family's class names (its label space) and its eval head (None = a plain head over them)."""
    names = list(classnames())
    if family in ("imagenet_r", "imagenet_a"):
        sub = subset_indices(family)
        return [names[i] for i in sub], EvalHead("subset", tuple(names), tuple((i,) for i in sub))
    if family == "objectnet":
        obj = objectnet_classes()
        return [n for _, n, _ in obj], EvalHead("max", tuple(names), tuple(ix for _, _, ix in obj))
    return names, None


def _folder_labels(family: str) -> dict[str, int]:
    """Folder name on disk -> label in the family's label space."""
    if family == "imagenet_v2":
        return {str(i): i for i in range(1000)}
    if family in ("imagenet_r", "imagenet_a"):
        return {wnids()[j]: k for k, j in enumerate(subset_indices(family))}
    if family == "objectnet":
        return {folder: k for k, (folder, _, _) in enumerate(objectnet_classes())}
    return {w: i for i, w in enumerate(wnids())}


def family_folders(family: str, root: str, set_name: str) -> tuple[list[tuple[str, int]], list[str]]:
    """[(class folder path, label)] of the folders under ``root`` and the folder names skipped.

    Unknown folders are an error (a wrong family or path), except for ObjectNet whose 313 folders hold
    200 classes outside the ImageNet mapping (the reference skips them too).
    """
    from .errors import data_error as _error
    labels = _folder_labels(family)
    subdirs = sorted(d for d in os.listdir(root) if os.path.isdir(os.path.join(root, d)))
    unknown = [d for d in subdirs if d not in labels]
    if unknown and family != "objectnet":
        what = {"imagenet_v2": "class indices 0..999", "imagenet_r": "wnids of the ImageNet-R 200-class subset",
                "imagenet_a": "wnids of the ImageNet-A 200-class subset"}.get(family, "ImageNet-1k wnids")
        raise _error(f"dataset {set_name!r} (family {family}): {len(unknown)} folder(s) under {root} are not "
                     f"{what}: {', '.join(unknown[:8])}{' ...' if len(unknown) > 8 else ''}")
    kept = [(os.path.join(root, d), labels[d]) for d in subdirs if d in labels]
    if not kept:
        raise _error(f"dataset {set_name!r} (family {family}): no class folders of this family under {root}")
    return kept, unknown
