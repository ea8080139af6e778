"""Attributions for CLIP image-text similarity: Integrated Gradients, Saliency, Occlusion, Grad-CAM (§9.3).

The attributed scalar is the zero-shot logit of one class, ``s * <normalise(E_I(x)), e_c>``, with the class
embeddings ``e`` (C, d) computed once *outside* the attributed forward (ecosystem.md §5: this keeps the text
tower, which layer methods cannot handle twice in one forward, out of the graph, and is n_steps times
cheaper for IG). Images are (N, 3, H, W) in [0, 1] (a ClipModel normalises them itself), so baselines and
occlusion windows live in that range too.

Grad-CAM on a ViT block goes through :class:`GradCamTap`, which reshapes the block's patch tokens to a
(N, C, h, w) map *inside the graph* so that captum's LayerGradCam averages over space, not over tokens.
With CLS pooling the *last* block's patch tokens never reach the output: its Grad-CAM is exactly zero
(the default block is therefore the penultimate one, ``layer=-2``).
"""
from __future__ import annotations

import warnings
from contextlib import contextmanager
from typing import Iterator, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..models.zeroshot import SetHead, class_text_embeddings
from .zeroshot import zero_shot_logits_fn

METHODS = ("integrated_gradients", "saliency", "occlusion", "gradcam")
_ALIASES = {"ig": "integrated_gradients", "integrated_gradients": "integrated_gradients",
            "saliency": "saliency", "occlusion": "occlusion", "gradcam": "gradcam", "grad_cam": "gradcam",
            "grad-cam": "gradcam"}


class GradCamTap(nn.Module):
    """Wraps a ViT residual block; ``to_map`` sees its patch tokens as a (N, C, h, w) map in the graph.

    The block output (N, 1+h*w, C) (or (1+h*w, N, C) when not batch-first) is split into the CLS token and
    the patch tokens; the patch tokens go through the Identity ``to_map`` as a spatial map and are put back,
    so the forward value is unchanged and the map lies on every gradient path from the patches.
    """

    def __init__(self, block: nn.Module, grid: tuple[int, int], batch_first: bool = True):
        super().__init__()
        self.block, self.grid, self.batch_first = block, tuple(grid), batch_first
        self.to_map = nn.Identity()

    def forward(self, x, *args, **kwargs):
        out = self.block(x, *args, **kwargs)
        if not self.batch_first:
            out = out.transpose(0, 1)                                        # (N, 1+hw, C)
        cls, tok = out[:, :1], out[:, 1:]
        n, l, c = tok.shape
        fmap = self.to_map(tok.transpose(1, 2).reshape(n, c, *self.grid))    # (N, C, h, w)
        out = torch.cat([cls, fmap.reshape(n, c, l).transpose(1, 2)], dim=1)
        return out if self.batch_first else out.transpose(0, 1)


@contextmanager
def gradcam_tap(model: nn.Module, layer: int = -2) -> Iterator[GradCamTap]:
    """Temporarily replace ``visual.transformer.resblocks[layer]`` with a GradCamTap; always restored."""
    visual = getattr(model, "clip", model).visual
    if not hasattr(visual, "transformer"):
        raise ValueError("Grad-CAM via a block tap needs a ViT image tower")
    blocks = visual.transformer.resblocks
    idx = layer % len(blocks)
    original = blocks[idx]
    grid = tuple(visual.grid_size)
    blocks[idx] = tap = GradCamTap(original, grid, getattr(visual.transformer, "batch_first", True))
    try:
        yield tap
    finally:
        blocks[idx] = original


def _patch_size(model: nn.Module, height: int) -> int:
    visual = getattr(model, "clip", model).visual
    p = getattr(visual, "patch_size", None)
    p = p[0] if isinstance(p, (tuple, list)) else p
    return int(p) if p else max(1, height // 7)


def _attribute(method: str, fwd, model, x: torch.Tensor, target, *, layer: int, n_steps: int,
               internal_batch_size: int | None, window: int | None, baseline: float) -> torch.Tensor:
    """Dispatch to captum; returns (N, H, W)."""
    from captum.attr import IntegratedGradients, LayerAttribution, LayerGradCam, Occlusion, Saliency
    base = torch.full_like(x, float(baseline))
    if method == "integrated_gradients":
        # signed; summed over RGB so that sum over pixels = f(x) - f(baseline) (completeness)
        att = IntegratedGradients(fwd).attribute(x, baselines=base, target=target, n_steps=n_steps,
                                                 internal_batch_size=internal_batch_size)
        return att.sum(dim=1)
    if method == "saliency":
        # |d score / d x|, max over RGB (Simonyan et al. 2014)
        return Saliency(fwd).attribute(x, target=target, abs=True).amax(dim=1)
    if method == "occlusion":
        # score drop when a (patch-aligned) window is set to the baseline; equal on the 3 channels -> mean
        w = int(window or _patch_size(model, x.shape[-2]))
        att = Occlusion(fwd).attribute(x, sliding_window_shapes=(3, w, w), strides=(3, w, w), baselines=base,
                                       target=target)
        return att.mean(dim=1)
    with gradcam_tap(model, layer) as tap:
        cam = LayerGradCam(fwd, tap.to_map).attribute(x, target=target, relu_attributions=True)  # (N,1,h,w)
    return LayerAttribution.interpolate(cam, tuple(x.shape[-2:]), "bilinear").squeeze(1)


def attribute(model: nn.Module, tokenizer, images: torch.Tensor, classnames: Sequence[str],
              templates: Sequence[str], target, method: str = "integrated_gradients", *, layer: int = -2,
              n_steps: int = 32, internal_batch_size: int | None = 64, window: int | None = None,
              baseline: float = 0.0, head: SetHead | None = None,
              class_emb: torch.Tensor | None = None) -> torch.Tensor:
    """Attribution map (N, H, W) of the zero-shot logit of class ``target`` (an int, or (N,) ints) for images
    (N, 3, H, W) in [0, 1]. ``method``: integrated_gradients (alias ig), saliency, occlusion, gradcam.

    * integrated_gradients: signed, channel-summed; sums to f(x) - f(baseline) up to the integral error
      (``n_steps`` Gauss-Legendre points); baseline = constant image ``baseline`` (0 = black).
    * saliency: |gradient|, max over channels.
    * occlusion: f(x) - f(x with a window x window patch set to ``baseline``); window = the ViT patch size.
    * gradcam: ReLU(sum_c mean_hw(d score/d A_c) A_c) on ``visual.transformer.resblocks[layer]``, bilinearly
      upsampled; unnormalised (see :func:`normalise_maps`). ``layer=-1`` is all zeros under CLS pooling.
    ``head`` (models.zeroshot.set_head of the image's set) maps the logits over ``classnames`` to the set's
    classes first (ImageNet-R/A subset, ObjectNet max-pool), so ``target`` indexes the set's classes;
    ``class_emb`` (S, d), the embeddings of ``classnames``, saves recomputing them per method.
    The model is put in eval mode for the call and restored; its weights are not changed.
    """
    key = _ALIASES.get(method.lower().replace(" ", "_"))
    if key is None:
        raise ValueError(f"unknown attribution method {method!r}; choose one of {', '.join(METHODS)}")
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"images must be (N, 3, H, W) in [0, 1], got {tuple(images.shape)}")
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    try:
        if class_emb is None:
            class_emb = class_text_embeddings(model, tokenizer, list(classnames), list(templates))   # (S, d)
        n_classes = head.num_classes if head is not None else class_emb.shape[0]
        tgt = torch.as_tensor(target, device=device).long()
        if bool((tgt < 0).any()) or bool((tgt >= n_classes).any()):
            raise ValueError(f"target {target!r} out of range for {n_classes} classes")
        tgt = int(tgt) if tgt.ndim == 0 else tgt
        x = images.detach().to(device).float()
        fwd = zero_shot_logits_fn(model, class_emb, head)                # (N, C) set logits
        with warnings.catch_warnings():   # captum: "Input Tensor 0 did not already require gradients" (harmless)
            warnings.filterwarnings("ignore", message=".*did not already require gradients.*")
            att = _attribute(key, fwd, model, x, tgt, layer=layer, n_steps=n_steps,
                             internal_batch_size=internal_batch_size, window=window, baseline=baseline)
    finally:
        model.train(was_training)
    return att.detach()


def normalise_maps(maps: torch.Tensor) -> torch.Tensor:
    """Per-image min-max to [0, 1] for display, (N, H, W) -> (N, H, W); constant maps become 0."""
    flat = maps.flatten(1)
    lo, hi = flat.min(dim=1, keepdim=True).values, flat.max(dim=1, keepdim=True).values
    span = (hi - lo).clamp_min(1e-12)
    return ((flat - lo) / span * (hi > lo)).view_as(maps)


def upsample_map(maps: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(N, h, w) -> (N, H, W) bilinear (for overlays on larger display images)."""
    return F.interpolate(maps[:, None], size=size, mode="bilinear", align_corners=False)[:, 0]
