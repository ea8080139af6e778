"""A run's datasets: the checks before anything is written (``check_run_data``), the declared-set builder,
and loading the train set + eval sets of a DataConfig (``load_run_sets``).

The checks cover what would otherwise give a silently wrong or late result (issue 12 / issue 16 item 4):
a missing path, an empty folder, an unreadable class-names or templates file, a single-class train set,
no eval set, and eval classes that differ from the train classes (differences listed; a subset family such
as imagenet_r must be a subset of the train classes, ObjectNet's mapped ImageNet classes likewise).
"""
from __future__ import annotations

import numpy as np

from . import declared
from .registry import _error, _spec, declared_sets, load_dataset

FILE_KINDS = ("imagefolder", "csv")


def _is_file_set(name: str, datasets_file: str) -> bool:
    spec, _ = _spec(name, datasets_file)
    return spec.kind in ("files", "declared")


def _classes(name: str, dc, split: str) -> tuple[list[str], object, int]:
    """(class names, eval head or None, number of classes with images) of one set, decoding nothing."""
    spec, _ = _spec(name, dc.datasets_file)
    if spec.kind == "declared" and spec.declared.kind == "imagefolder":
        sc = declared.scan(spec.declared, split)
        return sc.classnames, sc.head, len(set(sc.labels))
    ds = load_dataset(name, split=split, image_size=8, seed=dc.seed, max_samples=None if spec.kind == "files" else 64,
                      path=dc.path if name in FILE_KINDS else "", datasets_file=dc.datasets_file)
    return ds.classnames, getattr(ds, "eval_head", None), len(set(ds.labels.tolist()))


def _diff(a: list[str], b: list[str]) -> str:
    show = lambda xs: ", ".join(xs[:6]) + (f" (+{len(xs) - 6} more)" if len(xs) > 6 else "")  # noqa: E731
    sa, sb = set(a), set(b)
    only_a, only_b = [x for x in a if x not in sb], [x for x in b if x not in sa]
    return "; ".join(p for p in (f"only in the eval set: {show(only_a)}" if only_a else "",
                                 f"only in the train set: {show(only_b)}" if only_b else "") if p)


def _check_eval_classes(name: str, train_name: str, train_classes: list[str], classes: list[str], head) -> None:
    where, train_set = f"data.eval_sets: dataset {name!r}", set(train_classes)
    if head is not None and head.kind == "subset":
        missing = [c for c in classes if c not in train_set]
        if missing:
            raise _error(f"{where} is a class subset whose classes must all be train classes of {train_name!r} "
                         f"(data.train_set); {_diff(missing, [])}")
    elif head is not None:     # ObjectNet: the ImageNet classes its logits are pooled from
        needed = sorted({c for i in range(len(head.groups)) for c in head.space_classes(i)})
        missing = [c for c in needed if c not in train_set]
        if missing:
            raise _error(f"{where} pools ImageNet classes that the train set {train_name!r} lacks: "
                         f"{_diff(missing, [])}")
    elif set(classes) != set(train_classes):
        raise _error(f"{where} has classes that differ from the train set {train_name!r} (data.train_set): "
                     f"{_diff(classes, train_classes)}")


def check_run_data(dc) -> None:
    """Every problem of a DataConfig's datasets, raised (DataError naming the set/key) before a run starts."""
    if not dc.eval_sets:
        raise _error("data.eval_sets must name at least one evaluation set, got []")
    declared_sets(dc.datasets_file)              # a bad file (or a name shadowing a registered set) fails here
    for key, name in [("data.train_set", dc.train_set), *[("data.eval_sets", n) for n in dc.eval_sets]]:
        try:
            _spec(name, dc.datasets_file)
        except ValueError as e:
            raise _error(f"{key}: {e}") from None
    if dc.templates:
        declared.read_templates(dc.templates, "data.templates")
    files = [n for n in (dc.train_set, *dc.eval_sets) if _is_file_set(n, dc.datasets_file)]
    if not files:
        return                          # registered digit sets only: unchanged behaviour
    train_classes, _, present = _classes(dc.train_set, dc, "train")
    if dc.train_set in files and present < 2:
        raise _error(f"data.train_set: dataset {dc.train_set!r} has images of {present} class; fine-tuning "
                     "a classifier needs at least 2 class folders")
    for name in dc.eval_sets:
        classes, head, _ = _classes(name, dc, "test")
        _check_eval_classes(name, dc.train_set, train_classes, classes, head)


def load_run_sets(dc, image_size: int):
    """(train set, {name: eval set}) of a DataConfig, declared names and data.templates included."""
    def load(name: str, split: str, max_samples):
        return load_dataset(name, split=split, image_size=image_size, seed=dc.seed, max_samples=max_samples,
                            path=dc.path if name in FILE_KINDS else "", datasets_file=dc.datasets_file,
                            templates=dc.templates)
    return (load(dc.train_set, "train", None),
            {name: load(name, "test", dc.max_eval_samples) for name in dc.eval_sets})
