"""Representation similarity during training: CKA / SVCCA per layer on a fixed probe batch (§9.2).

At the start of a run a probe batch is fixed (``train.similarity_probe`` images of the ID eval set, chosen
with a seeded generator that never touches the global RNG, plus one class prompt per image). The pretrained
model's per-layer features on it are computed once and kept (a few hundred KB, instead of a model copy).
At every evaluation the student's (and the teacher's) features are compared with them, layer by layer:

    student_vs_pretrained, student_vs_teacher, teacher_vs_pretrained   (the last two only with a teacher)

Each comparison gives linear CKA, debiased linear CKA and SVCCA. The rows are what ``EvalReport.similarities``
and the store's ``similarities`` table hold: {"tower", "layer", "layer_index", "pair", "kind", "value"}.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Callable, Mapping

import torch

from ..data.base import take
from ..metrics.similarity import centred_svd, linear_cka, linear_cka_debiased, svcca, svcca_from_svds
from ..models.taps import LayerKey, collect_features

KINDS: dict[str, Callable] = {"linear_cka": linear_cka, "linear_cka_debiased": linear_cka_debiased,
                              "svcca": svcca}
PAIRS = ("student_vs_pretrained", "student_vs_teacher", "teacher_vs_pretrained")
MIN_PROBE = 4          # the debiased HSIC estimator needs n > 3


@dataclass
class Probe:
    """A fixed probe batch: images (n, 3, H, W) in [0, 1], prompt tokens (n, L), labels (n,), all on the CPU."""
    images: torch.Tensor
    tokens: torch.Tensor
    labels: torch.Tensor
    dataset: str


def make_probe(dataset, tokenizer, n: int, seed: int = 0) -> Probe:
    """``n`` samples of ``dataset`` (all if it is smaller) chosen by a private seeded generator, with one
    prompt each: the sample's own caption, else a seeded random template filled with its class name."""
    n = min(int(n), len(dataset))
    if n < MIN_PROBE:
        raise ValueError(f"similarity probe needs at least {MIN_PROBE} samples, {dataset.name!r} gives {n}")
    gen = torch.Generator().manual_seed(int(seed))       # private: the training RNG stream is unaffected
    idx = torch.randperm(len(dataset), generator=gen)[:n]
    images, labels = take(dataset, idx)
    if dataset.captions is not None:
        texts = [dataset.captions[int(i)] for i in idx]
    else:
        t_idx = torch.randint(len(dataset.templates), (n,), generator=gen).tolist()
        texts = [dataset.templates[t].format(dataset.classnames[int(c)]) for t, c in zip(t_idx, labels)]
    return Probe(images.float(), tokenizer(texts), labels, dataset.name)


def similarity_rows(feats_a: Mapping[LayerKey, torch.Tensor], feats_b: Mapping[LayerKey, torch.Tensor],
                    pair: str, kinds: Mapping[str, Callable] = KINDS) -> list[dict]:
    """One row per (layer present in both, kind): {"tower", "layer", "layer_index", "pair", "kind", "value"}.
    Each feature matrix is (n, p); p may differ between a and b."""
    rows = []
    for key in feats_a:
        if key not in feats_b:
            continue
        tower, layer, index = key
        for kind, fn in kinds.items():
            rows.append({"tower": tower, "layer": layer, "layer_index": int(index), "pair": pair,
                         "kind": kind, "value": float(fn(feats_a[key], feats_b[key]))})
    return rows


class SimilarityTracker:
    """Keeps the probe and the pretrained features; ``rows(student, teacher)`` gives the per-layer rows."""

    def __init__(self, probe: Probe, pretrained_model: torch.nn.Module, kinds: Mapping[str, Callable] = KINDS,
                 autocast: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext):
        self.probe, self.kinds, self.autocast = probe, dict(kinds), autocast
        self.reference = self.features(pretrained_model)      # {(tower, layer, index): (n, p)} on the CPU

    def features(self, model: torch.nn.Module) -> dict[LayerKey, torch.Tensor]:
        with self.autocast():
            return collect_features(model, self.probe.images, self.probe.tokens)

    def rows(self, student: torch.nn.Module, teacher=None) -> list[dict]:
        """Rows for student_vs_pretrained, plus student_vs_teacher and teacher_vs_pretrained when a teacher
        (a Teacher or its module) is given."""
        kinds = self._kinds_sharing_svds()
        s = self.features(student)
        rows = similarity_rows(s, self.reference, "student_vs_pretrained", kinds)
        if teacher is not None:
            t = self.features(getattr(teacher, "module", teacher))
            rows += similarity_rows(s, t, "student_vs_teacher", kinds)
            rows += similarity_rows(t, self.reference, "teacher_vs_pretrained", kinds)
        return rows

    def _kinds_sharing_svds(self) -> dict[str, Callable]:
        """``self.kinds`` with SVCCA decomposing each feature matrix once per evaluation (and the constant
        reference once per run): with a teacher each matrix is in two pairs, so 6 SVDs per layer become 2
        (the whole-run cost bench: SVDs were ~20 % of a short TRACER run). Same numbers as :func:`svcca`."""
        if self.kinds.get("svcca") is not svcca:
            return self.kinds
        ref_ids = {id(v) for v in self.reference.values()}
        self._svds = {k: v for k, v in getattr(self, "_svds", {}).items() if k in ref_ids}
        svds = self._svds

        def shared(X: torch.Tensor, Y: torch.Tensor) -> float:
            for M in (X, Y):
                if id(M) not in svds:
                    svds[id(M)] = (M, centred_svd(M))      # M kept alive: its id cannot be reused meanwhile
            return svcca_from_svds(svds[id(X)][1], svds[id(Y)][1])
        return {**self.kinds, "svcca": shared}


def probe_dataset(eval_sets: Mapping, train_set: str):
    """The ID eval set (same name as the training set), else the first eval set; None when there is none."""
    if train_set in eval_sets:
        return eval_sets[train_set]
    return next(iter(eval_sets.values()), None)


def build_similarity_tracker(cfg, pretrained_model, tokenizer, eval_sets: Mapping,
                             autocast=contextlib.nullcontext) -> SimilarityTracker | None:
    """The tracker for a run (``cfg`` a RunConfig), or None when ``train.similarity_probe`` is 0 or there is
    no eval set. Call it before the first optimisation step: ``pretrained_model`` is read right now."""
    n = int(getattr(cfg.train, "similarity_probe", 0))
    ds = probe_dataset(eval_sets, cfg.data.train_set) if n > 0 else None
    if ds is None:
        return None
    probe = make_probe(ds, tokenizer, n, seed=cfg.data.seed)
    return SimilarityTracker(probe, pretrained_model, autocast=autocast)
