"""The zero-shot classifier that attributions and attacks differentiate through."""
from __future__ import annotations

from typing import Callable

import torch

from ..models.zeroshot import SetHead, class_text_embeddings, set_head


def zero_shot_logits_fn(model: torch.nn.Module, class_emb: torch.Tensor,
                        head: SetHead | None = None) -> Callable[[torch.Tensor], torch.Tensor]:
    """images (N, 3, H, W) in [0, 1] -> zero-shot logits (N, C) = head(s * normalise(E_I(x)) @ class_emb.T).

    ``class_emb`` (S, d) is computed once outside (the text tower stays out of the graph) and detached.
    ``head`` (models.zeroshot.SetHead) maps the S head logits to the set's C classes (R/A subset, ObjectNet
    max-pool; differentiable); None = identity."""
    scale = model.logit_scale.detach()
    emb = class_emb.detach()
    project = head if head is not None else (lambda z: z)

    def fwd(images: torch.Tensor) -> torch.Tensor:
        return project(scale * model.encode_image(images) @ emb.t())
    return fwd


def set_logits_fn(model: torch.nn.Module, tokenizer, dataset) -> Callable[[torch.Tensor], torch.Tensor]:
    """The zero-shot classifier of ``dataset`` exactly as training-time evaluation scores it: class embeddings
    over the set head's classes (the 1000 ImageNet names for ImageNet-R/A and ObjectNet) with the set's
    templates, then the set's logit transform (models.zeroshot.set_head) -> (N, C) logits."""
    head = set_head(dataset)
    emb = class_text_embeddings(model, tokenizer, list(head.classes), list(dataset.templates))   # (S, d)
    return zero_shot_logits_fn(model, emb, head)
