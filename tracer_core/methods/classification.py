"""FT baseline (spec §8): cross-entropy on the image tower + a linear head initialised from the
zero-shot text head (logit scale baked in, input features normalised). The text tower is not trained."""
from __future__ import annotations

import torch
import torch.nn as nn

from ..losses import classification_loss
from ..models.zeroshot import class_text_embeddings
from .base import Batch, Method, StepOutput


class CEMethod(Method):
    name = "ft"

    def __init__(self, cfg, student, ctx):
        super().__init__(cfg, student, ctx)
        emb = class_text_embeddings(student, ctx.tokenizer, ctx.classnames, ctx.templates)   # (C, d)
        self.head = nn.Linear(emb.shape[1], emb.shape[0], bias=False).to(ctx.device)
        with torch.no_grad():
            self.head.weight.copy_(student.logit_scale.detach() * emb)
        self.classnames = list(ctx.classnames)

    def extra_modules(self) -> list[nn.Module]:
        return [self.head]

    def trainable_parameters(self) -> list[nn.Parameter]:
        # image tower + head only: the reference deletes the text transformer for CE fine-tuning
        visual = [p for p in self.student.clip.visual.parameters() if p.requires_grad]
        return visual + list(self.head.parameters())

    def step(self, batch: Batch, step: int, teacher) -> StepOutput:
        logits = self.head(self.student.encode_image(batch.images))            # (B, C)
        terms = {"ce_loss": classification_loss(logits, batch.labels, self.cfg.loss.label_smoothing)}
        with torch.no_grad():
            stats = {("train_accuracy", ""): float((logits.argmax(-1) == batch.labels).float().mean())}
        return StepOutput(terms, stats)

    def classifier_head(self, classnames: list[str]):
        if list(classnames) != self.classnames:
            return None   # other label space: fall back to the zero-shot text head
        return self.head
