"""Zero-shot classification head from class-name prompts (spec §7)."""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

PROMPT_CHUNK = 2048     # prompts per text-tower batch when building a head


@torch.no_grad()
def class_text_embeddings(model, tokenizer, classnames: list[str], templates: list[str]) -> torch.Tensor:
    """e_c = normalise(mean_t normalise(E_T(template_t(c)))) for every class -> (C, d).

    Rebuilt from the *current* text tower each time it is called (the reference rebuilds it every epoch).
    Prompts are encoded in chunks of whole classes (about PROMPT_CHUNK prompts): ImageNet's 1000 classes x 80
    templates in one batch would need tens of GB of activations.
    """
    device = next(model.parameters()).device
    per = max(1, PROMPT_CHUNK // len(templates))                             # classes per chunk
    out = []
    for lo in range(0, len(classnames), per):
        names = classnames[lo:lo + per]
        texts = [t.format(c) for c in names for t in templates]             # c*T prompts, class-major
        feats = model.encode_text(tokenizer(texts).to(device))               # (c*T, d), unit rows
        out.append(feats.view(len(names), len(templates), -1).mean(dim=1))   # (c, d)
    return F.normalize(torch.cat(out), dim=-1)                               # (C, d)


def zero_shot_logits(image_features: torch.Tensor, class_embeddings: torch.Tensor, scale) -> torch.Tensor:
    """logits = s * normalise(E_I(x)) @ [e_1..e_C]  -> (N, C)."""
    return scale * image_features @ class_embeddings.t()


def group_index(groups, device=None) -> torch.Tensor:
    """Groups of head indices (one tuple per target class, lengths may differ) -> (C, G) long tensor,
    short groups padded with their own first index (a repeat leaves the max unchanged)."""
    width = max(len(g) for g in groups)
    return torch.tensor([list(g) + [g[0]] * (width - len(g)) for g in groups], dtype=torch.long, device=device)


def project_logits(logits: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """Logits over a head's S classes -> logits over a set's C classes (spec §7, ImageNet-R/A and ObjectNet):

        out[n, c] = max_{j in group_c} logits[n, j]        logits (N, S), index (C, G) -> (N, C)

    A class subset (ImageNet-R/A: the 200-class restriction before the argmax) has G = 1, so this is
    logits[:, subset]; ObjectNet pools the ImageNet logits mapped to each of its 113 classes.
    """
    return logits[:, index].amax(dim=-1)


@dataclass(frozen=True, eq=False)
class SetHead:
    """How one eval set is scored (spec §7), the same in training-time evaluation and the analysis pages:
    a head over ``classes`` (S names; the text prompts or a trained head), whose logits (N, S) ``__call__``
    maps to the set's C classes *before* any argmax, softmax or gradient:

        full set        identity (S = C)
        ImageNet-R/A    the 200-class restriction, logits[:, subset]             (G = 1)
        ObjectNet       out[:, c] = max over the ImageNet logits mapped to c     (G up to 5)

    ObjectNet's other half, the 2 px border crop, is applied when its images are decoded (data/loader.py
    ``open_rgb``), so every path that reads the set's images gets it."""
    classes: tuple[str, ...]
    index: torch.Tensor | None = None     # (C, G) into ``classes``; None = identity

    @property
    def num_classes(self) -> int:
        """C, the set's classes (what a target / label indexes)."""
        return len(self.classes) if self.index is None else self.index.shape[0]

    def __call__(self, head_logits: torch.Tensor) -> torch.Tensor:
        if self.index is None:
            return head_logits
        return project_logits(head_logits, self.index.to(head_logits.device))


def set_head(dataset) -> SetHead:
    """The SetHead of a dataset: its ``eval_head`` (data/imagenet.py EvalHead: ImageNet-R/A, ObjectNet), else a
    full head over its own class names."""
    eh = getattr(dataset, "eval_head", None)
    if eh is None:
        return SetHead(tuple(dataset.classnames))
    return SetHead(tuple(eh.space), group_index(eh.groups))
