"""Layer taps: per-layer features of both CLIP towers for a probe batch (tracer_algorithm.md §9.2).

Forward hooks on an open_clip ``CLIP`` (or ``CustomTextCLIP``) with a ViT image tower collect one ``(N, p)``
matrix per layer, keyed ``(tower, layer, index)``; ``index`` orders the layers inside a tower (0 = input side).

Vision (§9.2; ``ln_pre`` deliberately excluded):
  0       ``patch_embed``  conv1 output (N, C, h, w) averaged over the h*w patches -> (N, C)
  1..L    ``block_i``      residual block i output, pooled token (CLS for ``pool_type='tok'``, mean of the
                           patch tokens for ``'avg'``) -> (N, width)
  L+1     ``ln_post``      the pooled token after the final LayerNorm -> (N, width)
  L+2     ``final_proj``   the image embedding after ``visual.proj`` (unnormalised) -> (N, d)
Text (the text tower pools the EOT token, so that is its "CLS"):
  0       ``token_embed``  token + positional embeddings averaged over the real tokens (SOT..EOT) -> (N, width);
                           the EOT embedding alone would be the same row for every caption
  1..L    ``block_i``      residual block i output at the pooled (EOT) position -> (N, width)
  L+1     ``ln_final``     the pooled token after the final LayerNorm -> (N, width)
  L+2     ``final_proj``   the text embedding after ``text_projection`` (unnormalised) -> (N, d)

A ResNet image tower has no blocks to tap: only its ``final_proj`` is collected.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch
import torch.nn as nn
from open_clip.model import text_global_pool

LayerKey = tuple[str, str, int]          # (tower, layer name, index within the tower)


def _clip(model: nn.Module) -> nn.Module:
    """The open_clip model inside a ClipModel wrapper, or the model itself."""
    return getattr(model, "clip", model)


def _text_tower(clip: nn.Module) -> nn.Module:
    """CLIP keeps the text modules on itself; CustomTextCLIP has them in ``clip.text``."""
    return getattr(clip, "text", clip)


def _is_vit(visual: nn.Module) -> bool:
    return hasattr(visual, "transformer") and hasattr(visual, "conv1")


def declared_layers(model: nn.Module) -> list[LayerKey]:
    """Every layer the taps collect, in tower then depth order."""
    clip = _clip(model)
    keys: list[LayerKey] = []
    if _is_vit(clip.visual):
        n = len(clip.visual.transformer.resblocks)
        keys += [("vision", "patch_embed", 0)] + [("vision", f"block_{i}", i + 1) for i in range(n)]
        keys += [("vision", "ln_post", n + 1), ("vision", "final_proj", n + 2)]
    else:
        keys.append(("vision", "final_proj", 0))
    text = _text_tower(clip)
    n = len(text.transformer.resblocks)
    keys += [("text", "token_embed", 0)] + [("text", f"block_{i}", i + 1) for i in range(n)]
    keys += [("text", "ln_final", n + 1), ("text", "final_proj", n + 2)]
    return keys


def _vision_pool(visual: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """(N, 1+hw, C) tokens -> (N, C): the token the tower pools (CLS for 'tok', patch mean for 'avg')."""
    if getattr(visual, "pool_type", "tok") == "avg":
        return x[:, 1:].mean(dim=1)
    return x[:, 0]


def _text_pool(text: nn.Module, x: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """(N, L, C) tokens -> (N, C) at the position the text tower pools (EOT for 'argmax')."""
    pool = getattr(text, "text_pool_type", getattr(text, "pool_type", "argmax"))
    if pool not in ("argmax", "eos", "first", "last"):
        return x.mean(dim=1)
    return text_global_pool(x, tokens, pool, eos_token_id=getattr(text, "text_eos_id", None))


def _batch_first(out: torch.Tensor, transformer: nn.Module) -> torch.Tensor:
    """Block outputs are (L, N, C) inside a non-batch-first transformer; make them (N, L, C)."""
    return out if getattr(transformer, "batch_first", True) else out.transpose(0, 1)


class LayerTaps:
    """Forward hooks that record the §9.2 layers while the model runs ``encode_image`` / ``encode_text``.

    Use as a context manager; ``features`` maps ``(tower, layer, index)`` to a detached ``(N, p)`` float32
    tensor on the CPU. Call ``set_tokens`` before encoding text (the EOT position depends on the tokens).
    """

    def __init__(self, model: nn.Module):
        self.clip = _clip(model)
        self.features: dict[LayerKey, torch.Tensor] = {}
        self.tokens: torch.Tensor | None = None
        self._handles: list = []

    def set_tokens(self, tokens: torch.Tensor) -> None:
        self.tokens = tokens

    def _put(self, key: LayerKey, value: torch.Tensor) -> None:
        self.features[key] = value.detach().float().cpu()

    def _hook(self, key: LayerKey, fn):
        def hook(_module, _inputs, output):
            self._put(key, fn(output[0] if isinstance(output, tuple) else output))
        return hook

    def _add(self, module: nn.Module, key: LayerKey, fn) -> None:
        self._handles.append(module.register_forward_hook(self._hook(key, fn)))

    def _register_vision(self) -> None:
        visual = self.clip.visual
        if not _is_vit(visual):
            self._add(visual, ("vision", "final_proj", 0), lambda out: out)
            return
        blocks = visual.transformer.resblocks
        n = len(blocks)
        self._add(visual.conv1, ("vision", "patch_embed", 0), lambda out: out.flatten(2).mean(dim=2))
        for i, blk in enumerate(blocks):
            self._add(blk, ("vision", f"block_{i}", i + 1),
                      lambda out: _vision_pool(visual, _batch_first(out, visual.transformer)))
        # ln_post runs on all tokens (N, 1+hw, C) or, with final_ln_after_pool, on the pooled (N, C)
        self._add(visual.ln_post, ("vision", "ln_post", n + 1),
                  lambda out: out if out.ndim == 2 else _vision_pool(visual, out))
        self._add(visual, ("vision", "final_proj", n + 2), lambda out: out)

    def _register_text(self) -> None:
        text = _text_tower(self.clip)
        n = len(text.transformer.resblocks)

        def token_mean(out):                       # (N, L, C) embeddings -> mean over SOT..EOT
            eot = self.tokens.argmax(dim=-1)                                  # (N,)
            pos = torch.arange(out.shape[1], device=out.device)[None]        # (1, L)
            mask = (pos <= eot[:, None].to(out.device)).to(out.dtype)[..., None]   # (N, L, 1)
            pe = text.positional_embedding[: out.shape[1]].to(out.dtype)
            return ((out + pe) * mask).sum(dim=1) / mask.sum(dim=1)

        self._add(text.token_embedding, ("text", "token_embed", 0), token_mean)
        for i, blk in enumerate(text.transformer.resblocks):
            self._add(blk, ("text", f"block_{i}", i + 1),
                      lambda out: _text_pool(text, _batch_first(out, text.transformer), self.tokens))
        self._add(text.ln_final, ("text", "ln_final", n + 1), lambda out: _text_pool(text, out, self.tokens))

    def __enter__(self) -> "LayerTaps":
        self._register_vision()
        self._register_text()
        return self

    def __exit__(self, *exc) -> None:
        for h in self._handles:
            h.remove()
        self._handles.clear()


@contextmanager
def _eval_mode(model: nn.Module) -> Iterator[None]:
    was = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was)


@torch.inference_mode()
def collect_features(model: nn.Module, images: torch.Tensor, tokens: torch.Tensor,
                     batch_size: int = 256) -> dict[LayerKey, torch.Tensor]:
    """Features of every declared layer for a probe batch -> {(tower, layer, index): (N, p) float32 CPU}.

    ``model`` is a ClipModel (images in [0, 1], normalised here via its mean/std) or an open_clip CLIP
    (images already normalised). ``images`` (N, 3, H, W), ``tokens`` (N, L); both may be on the CPU.
    Runs in eval mode (no dropout) and restores the previous mode.
    """
    clip = _clip(model)
    device = next(clip.parameters()).device
    mean, std = getattr(model, "mean", None), getattr(model, "std", None)
    chunks: dict[LayerKey, list[torch.Tensor]] = {}
    with _eval_mode(model):
        for start in range(0, images.shape[0], batch_size):
            x = images[start:start + batch_size].to(device)
            t = tokens[start:start + batch_size].to(device)
            if mean is not None:
                x = (x - mean) / std
            with LayerTaps(model) as taps:
                taps.set_tokens(t)
                clip.encode_image(x)
                text_out = clip.encode_text(t)          # (n, d) unnormalised: the text final_proj
            feats = dict(taps.features)
            feats[("text", "final_proj", len(_text_tower(clip).transformer.resblocks) + 2)] = text_out.float().cpu()
            for key, value in feats.items():
                chunks.setdefault(key, []).append(value)
    return {key: torch.cat(chunks[key]) for key in declared_layers(model)}
