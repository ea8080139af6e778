"""Losses return named terms; a training step's total is the sum of the ``*_loss`` keys."""
from .contrastive import classification_loss, clip_contrastive_loss, clip_logits
from .distill import basic_sd_loss, crd_loss, cross_kd_loss, fd_loss, icl_loss, kd_terms
from .peers import consistency_kl, function_space_kl, gram_volume
from .regularizers import cross_fnorm, l2sp, orthogonality


def total_loss(terms: dict):
    """Sum of the terms whose key ends in ``_loss`` (the rest are logged only)."""
    return sum(v for k, v in terms.items() if k.endswith("_loss"))


__all__ = ["basic_sd_loss", "classification_loss", "clip_contrastive_loss", "clip_logits", "consistency_kl",
           "crd_loss", "cross_fnorm", "cross_kd_loss", "fd_loss", "function_space_kl", "gram_volume", "icl_loss",
           "kd_terms", "l2sp", "orthogonality", "total_loss"]
