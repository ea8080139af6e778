"""Adversarial robustness of the zero-shot head: FGSM and PGD (L-infinity), pure functions + a small driver.

Threat model: perturbations of the image in the [0, 1] range (before the model's own mean/std
normalisation), ``||x_adv - x||_inf <= eps`` and ``x_adv`` in [0, 1]; default eps = 4/255. The attacked
classifier is the zero-shot head, logits = s * normalise(E_I(x)) @ e.T with fixed class embeddings e (S, d),
then the set's head transform (models.zeroshot.set_head: ImageNet-R/A subset, ObjectNet max-pool).
The attacks maximise the cross-entropy of the true label (untargeted).

Accuracy under attack follows the AutoAttack convention: a sample counts as robust only if it is classified
correctly on the clean image *and* on every attacked image the attack produced (for PGD: every iterate).
So robust accuracy <= clean accuracy always, and with eps = 0 the two are equal exactly.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F

from ..data.loader import SkipCount, eval_batches
from .zeroshot import set_logits_fn

DEFAULT_EPS = 4 / 255
ATTACKS = ("fgsm", "pgd")


def _input_grad(logits_fn, x: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(d sum_i CE_i / dx (N, 3, H, W), logits (N, C) at x); only the input gets a gradient."""
    with torch.enable_grad():
        x = x.detach().requires_grad_(True)
        logits = logits_fn(x)
        loss = F.cross_entropy(logits, labels, reduction="sum")   # sum: per-sample gradients not scaled by 1/N
        grad, = torch.autograd.grad(loss, x)
    return grad, logits.detach()


def project(x_adv: torch.Tensor, x: torch.Tensor, eps: float) -> torch.Tensor:
    """Back into the L-inf ball of radius eps around x, then into [0, 1] (x in [0, 1] keeps both true)."""
    return torch.min(torch.max(x_adv, x - eps), x + eps).clamp(0.0, 1.0)


def fgsm(logits_fn, images: torch.Tensor, labels: torch.Tensor, eps: float = DEFAULT_EPS) -> torch.Tensor:
    """Fast gradient sign method (Goodfellow et al. 2015): x + eps * sign(grad_x CE), clipped to [0, 1]."""
    grad, _ = _input_grad(logits_fn, images, labels)
    return project(images + eps * grad.sign(), images, eps).detach()


def pgd(logits_fn, images: torch.Tensor, labels: torch.Tensor, eps: float = DEFAULT_EPS,
        step_size: float | None = None, steps: int = 5, random_start: bool = False,
        generator: torch.Generator | None = None, return_fooled: bool = False):
    """Projected gradient descent on the L-inf ball (Madry et al. 2018).

    ``steps`` signed-gradient steps of ``step_size`` (default 2.5 * eps / steps, Madry's ratio), each followed
    by :func:`project`. ``random_start`` begins at a uniform point of the ball (seeded by ``generator``).
    Returns the final x_adv (N, 3, H, W); with ``return_fooled`` also a bool (N,) mask of the samples that
    some iterate (including the final one) misclassified.
    """
    if steps < 1:
        raise ValueError(f"pgd needs steps >= 1, got {steps}")
    step_size = 2.5 * eps / steps if step_size is None else float(step_size)
    x_adv = images.detach().clone()
    if random_start and eps > 0:
        noise = torch.rand(images.shape, generator=generator, dtype=images.dtype).to(images.device)
        x_adv = project(images + (2 * noise - 1) * eps, images, eps)
    fooled = torch.zeros(images.shape[0], dtype=torch.bool, device=images.device)
    for _ in range(steps):
        grad, logits = _input_grad(logits_fn, x_adv, labels)
        fooled |= logits.argmax(dim=1) != labels
        x_adv = project(x_adv + step_size * grad.sign(), images, eps).detach()
    if return_fooled:
        with torch.no_grad():
            fooled |= logits_fn(x_adv).argmax(dim=1) != labels
        return x_adv, fooled
    return x_adv


@torch.no_grad()
def _correct(logits_fn, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    return logits_fn(x).argmax(dim=1) == labels


def robust_correct(logits_fn, images: torch.Tensor, labels: torch.Tensor, attack: str,
                   eps: float = DEFAULT_EPS, step_size: float | None = None, steps: int = 5,
                   random_start: bool = False, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
    """{"clean": bool (N,), "robust": bool (N,)}: correct clean, and correct clean and under ``attack``."""
    clean = _correct(logits_fn, images, labels)
    if attack == "fgsm":
        robust = clean & _correct(logits_fn, fgsm(logits_fn, images, labels, eps), labels)
    elif attack == "pgd":
        _, fooled = pgd(logits_fn, images, labels, eps, step_size, steps, random_start, generator, return_fooled=True)
        robust = clean & ~fooled
    else:
        raise ValueError(f"unknown attack {attack!r}; choose one of {', '.join(ATTACKS)}")
    return {"clean": clean, "robust": robust}


def robustness_eval(model: torch.nn.Module, tokenizer, dataset, attacks: Sequence[str] = ATTACKS,
                    eps: float = DEFAULT_EPS, step_size: float | None = None, steps: int = 5,
                    max_samples: int = 256, batch_size: int = 64, random_start: bool = False,
                    seed: int = 0) -> dict[str, float]:
    """Clean and under-attack accuracy of ``model``'s zero-shot head on the first ``max_samples`` of
    ``dataset`` (digit sets: a class-balanced prefix).

    The head and the images are the ones training-time evaluation uses: :func:`set_logits_fn` (ImageNet-R/A
    restricted to their 200 classes, ObjectNet max-pooled, so the attack maximises the CE of those logits)
    and ``eval_batches`` (eval transform, ObjectNet's border crop; unreadable files dropped and counted).
    Returns {"n" (images scored), "skipped_images", "eps", "clean_accuracy", "<attack>_accuracy",
    "<attack>_success_rate"}; the success rate is the fraction of clean-correct samples the attack fools.
    The model is evaluated in eval mode (restored).
    """
    for a in attacks:
        if a not in ATTACKS:
            raise ValueError(f"unknown attack {a!r}; choose one of {', '.join(ATTACKS)}")
    device = next(model.parameters()).device
    n = min(int(max_samples), len(dataset))
    gen = torch.Generator().manual_seed(int(seed))
    was_training = model.training
    model.eval()
    try:
        fn = set_logits_fn(model, tokenizer, dataset)                    # images -> (N, C) set logits
        clean, robust, skipped = [], {a: [] for a in attacks}, SkipCount()
        # in-process decoding (0 workers): this runs inside the dashboard server, which must not fork
        for images, labels in eval_batches(dataset, 0, n, batch_size, device, 0, skipped):
            images, labels = images.float(), labels.to(device)
            for a in attacks:
                res = robust_correct(fn, images, labels, a, eps, step_size, steps, random_start, gen)
                robust[a].append(res["robust"].cpu())
            clean.append(res["clean"].cpu() if attacks else _correct(fn, images, labels).cpu())
    finally:
        model.train(was_training)
    if not clean:
        raise ValueError(f"dataset {dataset.name!r}: none of its first {n} images could be read")
    clean_t = torch.cat(clean)
    out = {"n": float(len(clean_t)), "skipped_images": float(len(skipped)), "eps": float(eps),
           "clean_accuracy": clean_t.float().mean().item()}
    for a in attacks:
        r = torch.cat(robust[a])
        out[f"{a}_accuracy"] = r.float().mean().item()
        out[f"{a}_success_rate"] = ((clean_t & ~r).sum() / clean_t.sum().clamp_min(1)).item()
    return out
