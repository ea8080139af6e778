"""Attributions page: attribution maps of one image for each model of a checkpoint (torch on first use)."""
from __future__ import annotations

from tracer_core.lazy import lazy

from dataclasses import dataclass
from typing import Sequence

np = lazy("numpy")
pd = lazy("pandas")

from .checkpoints import CheckpointModels, eval_set

ATTR_METHODS = {"integrated_gradients": "Integrated Gradients", "saliency": "Saliency", "occlusion": "Occlusion",
                "gradcam": "Grad-CAM"}


@dataclass
class AttributionResult:
    image: np.ndarray                      # (H, W, 3) uint8
    maps: dict[tuple[str, str], np.ndarray]   # (role, method) -> (H, W) in [0, 1] (|attribution|, min-max)
    roles: list[str]
    role_labels: dict[str, str]
    methods: list[str]
    label: int
    target: int
    classnames: list[str]
    predictions: pd.DataFrame              # role, model, predicted, p(predicted), p(target)
    method_labels: dict[str, str]          # method -> display name (ATTR_METHODS)


def attribution_maps(cm: CheckpointModels, dataset: str, index: int, target: int | None = None,
                     methods: Sequence[str] = tuple(ATTR_METHODS), ig_steps: int = 16) -> AttributionResult:
    """Attribution maps of one image's zero-shot logit for class ``target`` (default: its label), for each
    model of the checkpoint and each method. Maps are shown as |attribution| min-max normalised per map
    (captum's "absolute_value" view); Grad-CAM uses the penultimate ViT block."""
    import torch

    from tracer_core.analysis.attributions import attribute, normalise_maps
    from tracer_core.analysis.zeroshot import zero_shot_logits_fn
    from tracer_core.models.zeroshot import class_text_embeddings, set_head

    ds = eval_set(cm, dataset)
    if not 0 <= int(index) < len(ds):
        raise ValueError(f"image index must be in [0, {len(ds) - 1}], got {index}")
    image, label = ds[int(index)]
    target = int(label) if target is None else int(target)
    x = image[None].float()
    head = set_head(ds)    # the set's logits as evaluation scores them (R/A subset, ObjectNet max-pool)
    maps, preds = {}, []
    with cm.lock, torch.random.fork_rng(devices=[]):
        for role in cm.roles:
            model = cm.models[role]
            emb = class_text_embeddings(model, cm.tokenizer, list(head.classes), list(ds.templates))   # (S, d)
            for m in methods:
                att = attribute(model, cm.tokenizer, x, head.classes, ds.templates, target, method=m,
                                n_steps=int(ig_steps), internal_batch_size=int(ig_steps), head=head, class_emb=emb)
                maps[(role, m)] = normalise_maps(att.abs())[0].numpy()
            with torch.no_grad():
                p = zero_shot_logits_fn(model, emb, head)(x).softmax(-1)[0]            # (C,) over the set
            k = int(p.argmax())
            preds.append({"role": role, "model": cm.role_label(role), "predicted": ds.classnames[k],
                          "p(predicted)": float(p[k]), f"p({ds.classnames[target]})": float(p[target])})
    img = (image.permute(1, 2, 0).clamp(0, 1).numpy() * 255).round().astype(np.uint8)
    return AttributionResult(img, maps, cm.roles, {r: cm.role_label(r) for r in cm.roles}, list(methods), int(label),
                             target, list(ds.classnames), pd.DataFrame(preds),
                             {m: ATTR_METHODS.get(m, m) for m in methods})
