"""Declared datasets: named image folders / caption tables listed once in a JSON file, used by name.

    {"datasets": [
      {"name": "imagenet",    "kind": "imagefolder", "path": "imagenet", "family": "imagenet"},
      {"name": "imagenet_r",  "kind": "imagefolder", "path": "imagenet-r", "family": "imagenet_r"},
      {"name": "my_cars",     "kind": "imagefolder", "path": "/data/cars", "split": "val",
       "classnames": "cars_names.txt", "templates": "short", "description": "my own set"}]}

Keys: ``name`` (letters, digits, ``_ - .``; not a registered name), ``kind`` imagefolder|csv, ``path``;
optional ``split`` (a sub-folder always used), ``classnames`` (one name per line, sorted-folder order),
``family`` (imagenet.py: fixes the class list, folder->label map, eval head and ObjectNet's 2 px crop),
``templates`` (openai80 | reference86 | short | a file, one template per line) and ``description``.
Relative paths resolve against the datasets file's folder. The file is found at ``data.datasets_file``,
else ``$TRACER_DATASETS``, else ``<data dir>/datasets.json`` when it exists.

Listing and checking (``scan``, ``check_run_data``) are torch-free; ``load_declared`` builds the FileImageSet.
"""
from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import imagenet
from .errors import data_error as _error

ENV = "TRACER_DATASETS"
KINDS = ("imagefolder", "csv")
KEYS = ("name", "kind", "path", "split", "classnames", "family", "templates", "description")
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm")
_NAME = re.compile(r"^[A-Za-z0-9_.\-]+$")


@dataclass(frozen=True)
class DeclaredSet:
    name: str
    kind: str
    path: str                  # absolute
    source: str                # the datasets file that declared it
    split: str = ""
    classnames: str = ""       # absolute path or ""
    family: str = ""
    templates: str = ""        # a template-set name or an absolute file path, "" = the default
    description: str = ""


@dataclass
class Scan:
    """What a declared set contains, found without decoding any image."""
    paths: list[str]
    labels: list[int]
    classnames: list[str]
    root: str
    head: imagenet.EvalHead | None = None
    crop_border: int = 0
    skipped: tuple[str, ...] = ()      # folders outside the family (ObjectNet's 200 unmapped classes)


def resolve_file(configured: str = "") -> Path | None:
    """The datasets file in force: the config key, else $TRACER_DATASETS, else <data dir>/datasets.json."""
    if configured:
        return Path(configured).expanduser()
    if os.environ.get(ENV):
        return Path(os.environ[ENV]).expanduser()
    # same rule as the store's data dir (store/schema.py), repeated so data/ does not import the store
    data_dir = Path(os.environ.get("TRACER_DATA_DIR") or Path(__file__).resolve().parents[2] / "data")
    default = data_dir / "datasets.json"
    return default if default.is_file() else None


def read_datasets_file(file: str | Path | None) -> dict[str, DeclaredSet]:
    """name -> DeclaredSet; {} when there is no file in force. Every problem names the file and entry."""
    if file is None:
        return {}
    file = Path(file)
    if not file.is_file():
        raise _error(f"datasets file {file} (data.datasets_file / ${ENV}) does not exist or is not a file")
    try:
        doc = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise _error(f"datasets file {file} is not readable JSON: {e}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("datasets"), list):
        raise _error(f"datasets file {file} must be an object {{\"datasets\": [ ... ]}}")
    out: dict[str, DeclaredSet] = {}
    for i, entry in enumerate(doc["datasets"]):
        decl = _entry(entry, file, i)
        if decl.name in out:
            raise _error(f"datasets file {file}: dataset {decl.name!r} is declared twice")
        out[decl.name] = decl
    return out


def _entry(entry, file: Path, i: int) -> DeclaredSet:
    where = f"datasets file {file}, entry {i}"
    if not isinstance(entry, dict):
        raise _error(f"{where}: expected an object, got {entry!r}")
    unknown = [k for k in entry if k not in KEYS]
    bad_type = [k for k, v in entry.items() if k in KEYS and not isinstance(v, str)]
    if unknown or bad_type:
        raise _error(f"{where}: unknown key(s) {unknown} (known: {', '.join(KEYS)})" if unknown
                     else f"{where}: key(s) {bad_type} must be strings")
    name = entry.get("name", "")
    where = f"datasets file {file}, dataset {name!r}"
    if not _NAME.match(name):
        raise _error(f"{where}: name must be letters, digits, '_', '-', '.' and not a registered dataset")
    for key, ok, allowed in (("kind", entry.get("kind") in KINDS, KINDS),
                             ("family", entry.get("family", "") in ("", *imagenet.FAMILIES), imagenet.FAMILIES)):
        if not ok:
            raise _error(f"{where}: {key} must be one of {', '.join(allowed)}, got {entry.get(key)!r}")
    if not entry.get("path"):
        raise _error(f"{where}: needs a path")
    if entry.get("family") and entry["kind"] != "imagefolder":
        raise _error(f"{where}: family {entry['family']!r} needs kind 'imagefolder'")
    base = file.parent
    rel = lambda p: str((base / p).expanduser().resolve()) if p else ""     # noqa: E731
    templates = entry.get("templates", "")
    return DeclaredSet(name, entry["kind"], rel(entry["path"]), str(file), entry.get("split", ""),
                       rel(entry.get("classnames", "")), entry.get("family", ""),
                       templates if templates in imagenet.TEMPLATE_SETS else rel(templates),
                       entry.get("description", ""))


def read_templates(spec: str, owner: str) -> list[str]:
    """A named template set or a file of templates (one per line, each with a '{}' slot)."""
    if spec in imagenet.TEMPLATE_SETS:
        return imagenet.template_set(spec)
    try:
        with open(os.path.expanduser(spec), encoding="utf-8") as f:
            lines = [ln.strip() for ln in f if ln.strip()]
    except (OSError, UnicodeDecodeError) as e:
        raise _error(f"{owner}: cannot read the templates file {spec}: {e}. Use openai80, reference86, short "
                     "or a text file with one template per line") from None
    bad = [t for t in lines if "{}" not in t]
    if not lines or bad:
        raise _error(f"{owner}: templates file {spec} must list templates with a '{{}}' slot, one per line"
                     + (f"; these lack it: {bad[:3]}" if bad else "; it is empty"))
    return lines


def _read_classnames(file: str, set_name: str, count: int) -> list[str]:
    try:
        with open(file, encoding="utf-8") as f:
            names = [ln.strip() for ln in f if ln.strip()]
    except (OSError, UnicodeDecodeError) as e:
        raise _error(f"dataset {set_name!r}: cannot read its class-names file {file}: {e}") from None
    if len(names) != count:
        raise _error(f"dataset {set_name!r}: class-names file {file} lists {len(names)} names for {count} "
                     "class folders (one name per line, in sorted folder order)")
    return names


def _root(decl: DeclaredSet, split: str) -> str:
    if not os.path.exists(decl.path):
        raise _error(f"dataset {decl.name!r} (declared in {decl.source}): path does not exist: {decl.path}")
    root = os.path.join(decl.path, decl.split) if decl.split else decl.path
    if decl.split and not os.path.isdir(root):
        raise _error(f"dataset {decl.name!r}: split folder {decl.split!r} not found: {root}")
    if not os.path.isdir(root):
        raise _error(f"dataset {decl.name!r}: {root} is not a folder (kind imagefolder)")
    subdirs = {d for d in os.listdir(root) if os.path.isdir(os.path.join(root, d))}
    if not decl.split and subdirs and subdirs <= {"train", "val", "test"}:   # path/train + path/val layout
        want = "train" if split == "train" else next((s for s in ("val", "test") if s in subdirs), "val")
        if want not in subdirs:
            raise _error(f"dataset {decl.name!r}: {root} has split folders {sorted(subdirs)} but no {want!r}")
        root = os.path.join(root, want)
    return root


def _images(folder: str) -> list[str]:
    return sorted(os.path.join(folder, f) for f in os.listdir(folder) if f.lower().endswith(IMAGE_EXTENSIONS))


def scan(decl: DeclaredSet, split: str = "test") -> Scan:
    """List an imagefolder set's images, labels and classes; raise naming the set on any problem."""
    root = _root(decl, split)
    if decl.family:
        folders, skipped = imagenet.family_folders(decl.family, root, decl.name)
        names, head = imagenet.family_classes(decl.family)
    else:
        subdirs = sorted(d for d in os.listdir(root) if os.path.isdir(os.path.join(root, d)))
        if not subdirs:
            raise _error(f"dataset {decl.name!r}: empty folder, no class sub-folders in {root}")
        folders, skipped, head = [(os.path.join(root, d), i) for i, d in enumerate(subdirs)], [], None
        names = (_read_classnames(decl.classnames, decl.name, len(subdirs)) if decl.classnames
                 else [d.replace("_", " ") for d in subdirs])
    if decl.family and decl.classnames:
        names = _read_classnames(decl.classnames, decl.name, len(names))
    paths, labels, empty = [], [], []
    for folder, label in folders:
        files = _images(folder)
        empty += [] if files else [os.path.basename(folder)]
        paths += files
        labels += [label] * len(files)
    if empty:
        raise _error(f"dataset {decl.name!r}: {len(empty)} empty class folder(s) under {root} (no "
                     f"{'/'.join(IMAGE_EXTENSIONS[:3])}... files): {', '.join(empty[:8])}")
    crop = imagenet.OBJECTNET_CROP if decl.family == "objectnet" else 0
    return Scan(paths, labels, names, root, head, crop, tuple(skipped))


def balanced_prefix(labels: list[int], max_samples: int | None) -> list[int]:
    """Indices of a class-interleaved prefix (rank within class, then class) of at most max_samples."""
    if max_samples is None or max_samples >= len(labels):
        return list(range(len(labels)))
    lab = np.asarray(labels)
    rank = np.zeros(len(lab), dtype=np.int64)
    for c in np.unique(lab):
        pos = np.flatnonzero(lab == c)
        rank[pos] = np.arange(len(pos))
    return np.lexsort((lab, rank))[:max_samples].tolist()


def set_templates(decl: DeclaredSet | None, run_templates: str, default: list[str]) -> list[str]:
    """data.templates, else the declared set's templates, else the family's openai80, else ``default``."""
    if run_templates:
        return read_templates(run_templates, "data.templates")
    if decl is not None and decl.templates:
        return read_templates(decl.templates, f"dataset {decl.name!r} templates")
    if decl is not None and decl.family:
        return imagenet.template_set("openai80")
    return default


def load_declared(decl: DeclaredSet, split: str, image_size: int, max_samples: int | None,
                  run_templates: str = ""):
    """Build the FileImageSet of a declared set; ``eval_head`` / ``crop_border`` ride along as attributes."""
    from .files import FILE_TEMPLATES, FileImageSet, load_csv
    if decl.kind == "csv":
        ds = load_csv(decl.path, image_size, max_samples)
        ds.name, ds.templates = decl.name, set_templates(decl, run_templates, ds.templates)
        return ds
    sc = scan(decl, split)
    keep = balanced_prefix(sc.labels, max_samples)
    skipped = f"; {len(sc.skipped)} folders outside the family skipped" if sc.skipped else ""
    present = len(set(sc.labels))
    ds = FileImageSet(decl.name, [sc.paths[i] for i in keep], [sc.labels[i] for i in keep], sc.classnames,
                      set_templates(decl, run_templates, FILE_TEMPLATES), image_size,
                      description=decl.description or f"{decl.family or 'image folder'} at {sc.root}: "
                      f"{len(keep)} images, {present} of {len(sc.classnames)} classes present{skipped}")
    ds.eval_head, ds.crop_border = sc.head, sc.crop_border
    return ds
