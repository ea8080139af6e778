"""Zero-shot / head evaluation on the ID and OOD sets: accuracy and calibration per set (spec §7).

A set with an ``eval_head`` (ImageNet-R/A, ObjectNet; data/imagenet.py) is scored by a head over the head's
class space (the 1000 ImageNet classes) whose logits are then projected to the set's classes (restricted to
the 200-class subset, or max-pooled for ObjectNet) *before* the argmax and the calibration metrics.
"""
from __future__ import annotations

import torch

from ..data.loader import SkipCount, eval_batches
from ..metrics.calibration import CalibrationAccumulator
from ..models.zeroshot import class_text_embeddings, set_head, zero_shot_logits
from . import distributed
from .hooks import EvalReport

# spec §7 / P9: the reference's per-batch ECE runs on class-sorted test loaders with batch 512 (the training
# batch), whatever batch size this evaluation computes with
REFERENCE_ECE_BATCH = 512


def _bin_rows(bins: dict, model_name: str) -> list[dict[str, float]]:
    rows = []
    for i in range(len(bins["count"])):
        rows.append({"model": model_name, "bin": i, "lo": float(bins["lo"][i]), "hi": float(bins["hi"][i]),
                     "count": float(bins["count"][i]), "mean_confidence": float(bins["mean_confidence"][i]),
                     "accuracy": float(bins["accuracy"][i])})
    return rows


def head_classes(dataset) -> list[str]:
    """The classes a set's head scores: the eval head's space when it has one, else its own classes."""
    return list(set_head(dataset).classes)


def _class_embeddings(model, tokenizer, classes: list[str], templates: list[str], cache: dict | None):
    """(C, d) zero-shot class embeddings, shared by the sets of one evaluation point with the same classes
    and templates (ImageNet val, V2, Sketch, R, A and ObjectNet all use the 1000-class head)."""
    key = (tuple(classes), tuple(templates))
    if cache is not None and key in cache:
        return cache[key]
    emb = class_text_embeddings(model, tokenizer, classes, templates)
    if cache is not None:
        cache[key] = emb
    return emb


@torch.no_grad()
def evaluate_model(model, tokenizer, dataset, batch_size: int, device, head=None, autocast=None,
                   dist: distributed.Dist | None = None, cache: dict | None = None,
                   num_workers: int = -1) -> dict:
    """Accuracy, ECE (global and batch-averaged), MCE, NLL, Brier and reliability bins of one model on
    one set. ``head`` (nn.Module features->logits over :func:`head_classes`) replaces the zero-shot text head.
    ``cache``: a dict reused across the sets of one evaluation of this same model (class embeddings).

    Under torchrun (``dist``) each rank evaluates a contiguous shard of the set and the accumulators are
    merged in rank order, so every rank returns exactly the one-process numbers (the class-sorted ECE too).
    """
    d = dist or distributed.Dist()
    was_training = model.training
    model.eval()
    acc = CalibrationAccumulator(n_bins=10, input_type="logits", sorted_batch_size=REFERENCE_ECE_BATCH)
    sh = set_head(dataset)         # the head's S classes -> the set's C (the one transform, models/zeroshot.py)
    with (autocast or torch.autocast("cpu", enabled=False)):
        class_emb = None if head is not None else _class_embeddings(
            model, tokenizer, list(sh.classes), dataset.templates, cache)     # (S, d)
        lo, hi = distributed.shard_range(len(dataset), d)                    # [0, n) in one process
        skipped = SkipCount()      # file sets stream through DataLoader workers; unreadable files are dropped
        for images, labels in eval_batches(dataset, lo, hi, batch_size, device, num_workers, skipped):
            feats = model.encode_image(images)                                # (b, d) unit rows
            logits = head(feats) if head is not None else zero_shot_logits(feats, class_emb, model.logit_scale)
            logits = logits.float().cpu()                                     # (b, S)
            acc.update(sh(logits), labels)                                     # (b, C)
    model.train(was_training)
    res = distributed.merge_shards(acc, d).compute()
    metrics = {"accuracy": res["accuracy"], "ece": res["ece"], "ece_batch": res["batch_averaged_ece"],
               "mce": res["mce"], "nll": res["nll"], "brier": res["brier"]}
    n_skipped = len(distributed.merge_shards(skipped, d))
    if n_skipped:                  # only then: the digit sets' metric rows stay as they were
        metrics["skipped_images"] = float(n_skipped)
    return {"metrics": metrics, "bins": res["bins"]}


def evaluate_sets(step: int, student, tokenizer, eval_sets: dict, batch_size: int, device,
                  method=None, teacher=None, autocast=None, dist=None) -> EvalReport:
    """Evaluate the student (and the teacher, when given) on every eval set -> one EvalReport."""
    report = EvalReport(step=step)
    s_cache, t_cache = {}, {}      # class embeddings per model, shared by sets with the same head classes
    for name, ds in eval_sets.items():
        head = method.classifier_head(head_classes(ds)) if method is not None else None
        res = evaluate_model(student, tokenizer, ds, batch_size, device, head=head, autocast=autocast, dist=dist,
                             cache=s_cache)
        report.metrics[name] = dict(res["metrics"])
        report.reliability[name] = _bin_rows(res["bins"], "student")
        if teacher is not None:
            t_res = evaluate_model(teacher.module, tokenizer, ds, batch_size, device, autocast=autocast, dist=dist,
                                   cache=t_cache)
            report.metrics[name].update({f"teacher_{k}": v for k, v in t_res["metrics"].items()})
            report.reliability[name] += _bin_rows(t_res["bins"], "teacher")
    return report
