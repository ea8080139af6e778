"""FLYP / CLIP symmetric contrastive loss (spec §1.2) and the CE fine-tuning loss."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def clip_logits(image_features: torch.Tensor, text_features: torch.Tensor, logit_scale: torch.Tensor):
    """Z = s F G^T (B,B) image->text logits and Z^T text->image, from unit features F, G (B,d)."""
    z = logit_scale * image_features @ text_features.t()
    return z, z.t()


def _ce(logits: torch.Tensor, target: torch.Tensor, label_smoothing: float) -> torch.Tensor:
    # (1 - ls) NLL + ls mean_j(-log p_j): the reference's LabelSmoothing, = torch's label_smoothing.
    return F.cross_entropy(logits, target, label_smoothing=label_smoothing)


def clip_contrastive_loss(image_features: torch.Tensor, text_features: torch.Tensor,
                          logit_scale: torch.Tensor, label_smoothing: float = 0.0) -> torch.Tensor:
    """L_CLIP = 1/2 [CE(Z, I) + CE(Z^T, I)] with Z = s F G^T and diagonal targets arange(B).

    Same-class pairs in a batch stay negatives (no class-aware masking), as in the reference ClipLoss.
    image_features, text_features: (B, d) L2-normalised; logit_scale: scalar s = exp(l).
    """
    z, zt = clip_logits(image_features, text_features, logit_scale)
    target = torch.arange(z.shape[0], device=z.device)
    return 0.5 * (_ce(z, target, label_smoothing) + _ce(zt, target, label_smoothing))


def classification_loss(logits: torch.Tensor, labels: torch.Tensor, label_smoothing: float = 0.0):
    """Cross-entropy on class logits (B, C) for the FT baseline."""
    return _ce(logits, labels, label_smoothing)
