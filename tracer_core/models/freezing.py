"""Layer freezing as in the reference ``apply_layer_freezing`` (spec §6)."""
from __future__ import annotations

import torch.nn as nn

TEXT_PARTS = ("transformer", "token_embedding", "positional_embedding", "ln_final", "text_projection")


def _blocks(module: nn.Module) -> list[nn.Module]:
    tr = getattr(module, "transformer", None)
    return list(getattr(tr, "resblocks", [])) if tr is not None else []


def apply_layer_freezing(clip: nn.Module, freeze_text: bool = False, trainable_layers: int = -1) -> None:
    """Set requires_grad on an open_clip CLIP in place.

    freeze_text: freeze the whole text tower (transformer, embeddings, ln_final, projection).
    trainable_layers: -1 = everything trainable; N > 0 freezes all but the last N residual blocks of
    each tower (embeddings, projections and LayerNorms stay trainable); 0 freezes both towers entirely.
    logit_scale is always trainable.
    """
    for p in clip.parameters():
        p.requires_grad_(trainable_layers != 0)      # §6: 0 freezes both towers entirely (logit_scale below)
    if trainable_layers > 0:
        for tower in (clip.visual, clip):
            blocks = _blocks(tower)
            n_frozen = max(len(blocks) - trainable_layers, 0)
            for blk in blocks[:n_frozen]:
                for p in blk.parameters():
                    p.requires_grad_(False)
    if freeze_text:
        for name in TEXT_PARTS:
            part = getattr(clip, name, None)
            if part is None:
                continue
            params = part.parameters() if isinstance(part, nn.Module) else [part]
            for p in params:
                p.requires_grad_(False)
    clip.logit_scale.requires_grad_(True)
