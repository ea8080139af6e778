"""User data on disk: image folders (one sub-folder per class) and FLYP-style CSV/TSV caption files.

Images are decoded lazily with PIL, converted to RGB (grey -> 3 channels), resized so the short side is
``image_size`` and centre-cropped to (3, image_size, image_size). Every problem raises DataError naming
the path: missing path, no images, unreadable image, classnames/label mismatch.
"""
from __future__ import annotations

import csv
import os
from typing import Sequence

import numpy as np
import torch

from .base import DataError, ImageSet
from .columns import Encoder, StringColumn
from .loader import eval_transform, open_rgb

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm")
FILE_TEMPLATES = ["a photo of a {}.", "a picture of a {}.", "an image of a {}."]
CLASSNAMES_FILE = "classnames.txt"


class FileImageSet(ImageSet):
    """Images read from files on access: ``ds[i]`` opens ``paths[i]``.

    ``paths`` and ``captions`` are StringColumns (data/columns.py: no Python object per row, so a
    multi-million-row caption table stays small and DataLoader workers share it); lists are encoded."""

    def __init__(self, name: str, paths: Sequence[str], labels, classnames: Sequence[str], templates: Sequence[str],
                 image_size: int, captions: Sequence[str] | None = None, description: str = ""):
        super().__init__(name, classnames, templates, torch.as_tensor(np.asarray(labels, dtype=np.int64)), None,
                         description)
        self.paths, self.image_size = _column(paths), image_size
        if captions is not None:
            self.captions = _column(captions)
            if len(self.captions) != len(self.labels):
                raise DataError(f"dataset {name!r}: {len(self.captions)} captions for {len(self.labels)} samples")

    crop_border = 0     # px cut from each border before the resize (ObjectNet: 2; data/declared.py)
    eval_head = None    # data.imagenet.EvalHead of a subset / pooled family set, else None

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return load_image(self.paths[index], self.image_size, self.crop_border), int(self.labels[index])


def _column(values: Sequence[str]) -> StringColumn:
    return values if isinstance(values, StringColumn) else StringColumn.encode(values)


def load_image(path: str, image_size: int, crop_border: int = 0) -> torch.Tensor:
    """One file -> (3, S, S) float32 in [0,1]: RGB, [border crop], short side resized to S (bicubic), centre crop.

    The same decode as the DataLoader path (data/loader.py ``open_rgb`` + ``eval_transform``), so an image
    read one at a time (the Attributions page) equals the one evaluation scored, ObjectNet's crop included."""
    try:
        im = open_rgb(path, crop_border)
    except Exception as e:  # PIL raises several types (UnidentifiedImageError, OSError, SyntaxError...)
        raise DataError(f"cannot read image {path}: {e}") from e
    return eval_transform(im, image_size).float().div_(255.0)


def _read_classnames(path: str) -> list[str] | None:
    """Non-empty stripped lines of a classnames.txt, or None when the file does not exist."""
    if not os.path.isfile(path):
        return None
    with open(path, encoding="utf-8") as f:
        names = [line.strip() for line in f if line.strip()]
    if not names:
        raise DataError(f"{path} is empty; it must list one class name per line")
    return names


def _check_path(path: str, what: str) -> str:
    if not path:
        raise DataError(f"dataset {what!r} needs a path (data.path), got an empty string")
    if not os.path.exists(path):
        raise DataError(f"dataset {what!r}: path does not exist: {path}")
    return os.path.abspath(path)


def load_imagefolder(path: str, split: str, image_size: int, max_samples: int | None) -> FileImageSet:
    """``path/<class>/*.png``; if ``path`` holds only train/test/val folders, ``path/<split>`` is used.

    Class names: folder names with '_' -> ' ', or the lines of ``path/classnames.txt`` (in sorted folder
    order; the count must match the number of class folders).
    """
    root = _check_path(path, "imagefolder")
    if not os.path.isdir(root):
        raise DataError(f"dataset 'imagefolder': {root} is not a folder (one sub-folder per class expected)")
    subdirs = sorted(d for d in os.listdir(root) if os.path.isdir(os.path.join(root, d)))
    if subdirs and set(subdirs) <= {"train", "test", "val"}:
        if split not in subdirs:
            raise DataError(f"dataset 'imagefolder': {root} has split folders {subdirs} but no {split!r}")
        root = os.path.join(root, split)
        subdirs = sorted(d for d in os.listdir(root) if os.path.isdir(os.path.join(root, d)))
    if not subdirs:
        raise DataError(f"dataset 'imagefolder': no class sub-folders in {root}")
    names = _read_classnames(os.path.join(root, CLASSNAMES_FILE)) or \
        _read_classnames(os.path.join(os.path.abspath(path), CLASSNAMES_FILE))
    if names is not None and len(names) != len(subdirs):
        raise DataError(f"dataset 'imagefolder': {CLASSNAMES_FILE} lists {len(names)} classes but {root} has "
                        f"{len(subdirs)} class folders ({', '.join(subdirs)})")
    classnames = names or [d.replace("_", " ") for d in subdirs]
    paths, labels = [], []
    for label, d in enumerate(subdirs):
        files = sorted(f for f in os.listdir(os.path.join(root, d)) if f.lower().endswith(IMAGE_EXTENSIONS))
        paths += [os.path.join(root, d, f) for f in files]
        labels += [label] * len(files)
    if not paths:
        raise DataError(f"dataset 'imagefolder': no image files ({', '.join(IMAGE_EXTENSIONS)}) under {root}")
    if max_samples is not None:
        # interleave classes so a prefix is balanced: sort by rank within class, then class
        rank = np.zeros(len(labels), dtype=np.int64)
        for c in set(labels):
            pos = [i for i, lab in enumerate(labels) if lab == c]
            rank[pos] = np.arange(len(pos))
        order = np.lexsort((np.asarray(labels), rank))[:max_samples]
        paths, labels = [paths[i] for i in order], [labels[i] for i in order]
    return FileImageSet("imagefolder", paths, labels, classnames, FILE_TEMPLATES, image_size,
                        description=f"image folder {root}: {len(paths)} images, {len(classnames)} classes")


class _Table:
    """A FLYP CSV/TSV read as dictionary-encoded columns (data/columns.py), never as Python rows.

    ``n_rows`` counts every data row (blank lines skipped, as csv.DictReader does); the columns hold only the
    first ``max_rows`` of them, the rest is read for the checks alone."""

    def __init__(self, path: str, max_rows: int | None):
        self.path, self.n_rows, self.ragged, self.short = path, 0, None, None
        with open(path, encoding="utf-8", newline="") as f:
            first = f.readline()
            f.seek(0)
            reader = csv.reader(f, delimiter="\t" if "\t" in first else ",")
            self.header = next(reader, None) or []
            where = {name: i for i, name in enumerate(self.header)}     # a repeated name: the last wins (DictReader)
            cols = [c for c in ("filepath", "title", "label") if c in where]
            self.encoders = {c: Encoder() for c in cols}
            used = [(self.encoders[c], where[c]) for c in cols]
            need = max((i for _, i in used), default=-1)
            for row in reader:
                if not row:
                    continue
                i, self.n_rows = self.n_rows, self.n_rows + 1
                if len(row) > len(self.header) and self.ragged is None:
                    self.ragged = i
                if max_rows is not None and i >= max_rows:
                    continue
                if len(row) <= need:          # csv.DictReader would hand None to the label / caption code
                    self.short = i if self.short is None else self.short
                    continue
                for enc, k in used:
                    enc.add(row[k])

    def column(self, name: str) -> StringColumn:
        return self.encoders[name].column()


def _read_table(path: str, max_rows: int | None) -> _Table:
    """The table of a CSV/TSV with a header; tab-separated when the header line contains a tab."""
    table = _Table(path, max_rows)
    if not table.n_rows:
        raise DataError(f"dataset 'csv': {path} has no data rows")
    if table.ragged is not None:
        raise DataError(f"dataset 'csv': {path} row {table.ragged + 2} has more fields than the header; "
                        "quote captions that contain the separator")
    missing = [c for c in ("filepath", "title") if c not in table.header]
    if missing:
        raise DataError(f"dataset 'csv': {path} lacks column(s) {missing}; the FLYP format needs "
                        f"'filepath' and 'title' (optional 'label'), found {list(dict.fromkeys(table.header))}")
    if table.short is not None:
        raise DataError(f"dataset 'csv': {path} row {table.short + 2} has fewer fields than the header")
    return table


def _first_row(codes: np.ndarray, j: int) -> int:
    return int(np.flatnonzero(codes == j)[0])


def _csv_labels(table: _Table, path: str, names: list[str] | None) -> tuple[np.ndarray, list[str]]:
    """Labels (N,) and class names: the label column (checked against classnames.txt), else a class name
    found in the title (needs classnames.txt), else every distinct title is its own class. Each distinct
    value is parsed / matched once; an error names the first row that has it."""
    if "label" in table.encoders:
        col = table.column("label")
        try:
            values = np.array([int(v) for v in col.distinct()], dtype=np.int64)
        except ValueError as e:
            raise DataError(f"dataset 'csv': {path}: the label column must hold integers ({e})") from e
        labels = values[col.codes]
        k = int(labels.max()) + 1
        if names is not None and (len(names) < k or int(labels.min()) < 0):
            bad = int(np.flatnonzero((labels < 0) | (labels >= len(names)))[0])
            raise DataError(f"dataset 'csv': {path} row {bad + 2} has label {labels[bad]} but {CLASSNAMES_FILE} "
                            f"lists {len(names)} classes (labels must be 0..{len(names) - 1})")
        return labels, names or [str(i) for i in range(k)]
    titles = table.column("title")
    distinct = titles.distinct()
    if names is not None:
        per_title = []
        for j, title in enumerate(distinct):
            hits = [c for c, n in enumerate(names) if n.lower() in title.lower()]
            if not hits:
                raise DataError(f"dataset 'csv': {path} row {_first_row(titles.codes, j) + 2}: title {title!r} names "
                                f"none of the {len(names)} classes in {CLASSNAMES_FILE} and there is no label column")
            per_title.append(max(hits, key=lambda c: len(names[c])))   # longest match: "sea lion" over "lion"
        return np.array(per_title, dtype=np.int64)[titles.codes], names
    order = sorted(distinct)
    rank = {t: k for k, t in enumerate(order)}
    return np.array([rank[t] for t in distinct], dtype=np.int64)[titles.codes], order


def load_csv(path: str, image_size: int, max_samples: int | None) -> FileImageSet:
    """FLYP CSV/TSV: columns ``filepath`` (relative to the CSV's folder, or absolute) and ``title``
    (the caption), optional ``label``; class names from ``classnames.txt`` next to the file.

    Paths and captions are kept as StringColumns (each distinct file path and caption stored once); the
    file checks and the title matching run once per distinct value, not per row."""
    file = _check_path(path, "csv")
    if not os.path.isfile(file):
        raise DataError(f"dataset 'csv': {file} is not a file (expected a .csv or .tsv)")
    table = _read_table(file, max_samples)
    base = os.path.dirname(file)
    rel = table.column("filepath")
    paths = StringColumn.from_distinct([os.path.join(base, p) for p in rel.distinct()], rel.codes)
    missing = [p for p in paths.distinct() if not os.path.isfile(p)]
    if missing:
        raise DataError(f"dataset 'csv': {file} refers to {len(missing)} missing image file(s), e.g. {missing[0]}")
    labels, classnames = _csv_labels(table, file, _read_classnames(os.path.join(base, CLASSNAMES_FILE)))
    return FileImageSet("csv", paths, labels, classnames, FILE_TEMPLATES, image_size,
                        captions=table.column("title"),
                        description=f"caption table {file}: {len(paths)} images, {len(classnames)} classes")
