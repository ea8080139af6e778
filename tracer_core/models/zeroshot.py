"""Zero-shot classification head from class-name prompts (spec §7)."""
from __future__ import annotations

import torch
import torch.nn.functional as F


@torch.no_grad()
def class_text_embeddings(model, tokenizer, classnames: list[str], templates: list[str]) -> torch.Tensor:
    """e_c = normalise(mean_t normalise(E_T(template_t(c)))) for every class -> (C, d).

    Rebuilt from the *current* text tower each time it is called (the reference rebuilds it every epoch).
    """
    device = next(model.parameters()).device
    texts = [t.format(c) for c in classnames for t in templates]            # C*T prompts, class-major
    feats = model.encode_text(tokenizer(texts).to(device))                   # (C*T, d), unit rows
    feats = feats.view(len(classnames), len(templates), -1).mean(dim=1)      # (C, d)
    return F.normalize(feats, dim=-1)


def zero_shot_logits(image_features: torch.Tensor, class_embeddings: torch.Tensor, scale) -> torch.Tensor:
    """logits = s * normalise(E_I(x)) @ [e_1..e_C]  -> (N, C)."""
    return scale * image_features @ class_embeddings.t()
