"""The zero-shot classifier that attributions and attacks differentiate through."""
from __future__ import annotations

from typing import Callable

import torch


def zero_shot_logits_fn(model: torch.nn.Module, class_emb: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
    """images (N, 3, H, W) in [0, 1] -> zero-shot logits (N, C) = s * normalise(E_I(x)) @ class_emb.T.

    ``class_emb`` (C, d) is computed once outside (the text tower stays out of the graph) and detached."""
    scale = model.logit_scale.detach()
    emb = class_emb.detach()

    def fwd(images: torch.Tensor) -> torch.Tensor:
        return scale * model.encode_image(images) @ emb.t()
    return fwd
