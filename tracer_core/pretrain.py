"""Pretrain the embedded tiny CLIP on the procedural world (``python -m tracer_core pretrain``).

Why: no CLIP weights can be downloaded here, and a random model has nothing to forget. Contrastive
pretraining on rendered, captioned digits gives a small model real zero-shot knowledge that transfers
to handwritten digits, so fine-tuning on MNIST visibly trades robustness for ID accuracy.

Targets: captions of the same digit in one batch are not wrong matches, so each row's target mixes the
paired caption (weight 1 - same_class_weight) with a uniform share over same-digit captions.
Writes ``<out>.safetensors`` (fp16) and ``<out>.json`` (model card: config, seeds, steps, zero-shot table).
"""
from __future__ import annotations

import json
import math
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from .config import ModelConfig
from .models import build_model, embedded_checkpoint

BENCHMARK = ("mnist", "colored_mnist", "corrupted_mnist", "sklearn_digits", "heldout_fonts")


def soft_targets(labels: torch.Tensor, same_class_weight: float) -> torch.Tensor:
    """(B,B) rows: (1 - w) on the diagonal + w spread uniformly over same-label columns."""
    same = (labels[:, None] == labels[None, :]).float()
    return (1 - same_class_weight) * torch.eye(len(labels), device=labels.device) + \
        same_class_weight * same / same.sum(1, keepdim=True)


def pretrain_loss(f, g, scale, labels, same_class_weight: float) -> torch.Tensor:
    """Symmetric soft-target InfoNCE over Z = s F G^T (B,B)."""
    z = scale * f @ g.t()
    t = soft_targets(labels, same_class_weight)
    return 0.5 * (-(t * F.log_softmax(z, 1)).sum(1).mean() - (t * F.log_softmax(z.t(), 1)).sum(1).mean())


def zero_shot_table(model, tokenizer, device, image_size: int, max_samples: int = 1000) -> dict:
    from .data import load_dataset
    from .training.evaluate import evaluate_model
    table = {}
    for name in BENCHMARK:
        ds = load_dataset(name, split="test", image_size=image_size, seed=0, max_samples=max_samples)
        res = evaluate_model(model, tokenizer, ds, 256, device)["metrics"]
        table[name] = {"accuracy": round(res["accuracy"], 4), "ece": round(res["ece"], 4), "n": len(ds)}
    return table


def pretrain(name: str = "tiny-vit", steps: int = 1000, batch_size: int = 128, lr: float = 5e-4,
             warmup: int = 200, weight_decay: float = 0.1, seed: int = 0, same_class_weight: float = 0.5,
             device: str = "auto", out: str | None = None, log_every: int = 100) -> dict:
    from .data import world
    from .data.world import WorldStream
    from .training.schedule import cosine_lr
    from .training.setup import make_autocast, resolve_device, seed_everything
    seed_everything(seed)
    dev = resolve_device(device)
    precision, autocast = make_autocast(dev, "auto")
    model, tokenizer = build_model(ModelConfig(name=name, pretrained="none"), dev)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    stream = WorldStream(seed=seed, batch_size=batch_size, image_size=model.image_size, fonts="train")
    t0 = time.perf_counter()
    for step in range(steps):
        for group in opt.param_groups:
            group["lr"] = cosine_lr(step, lr, warmup, steps)
        images, labels, captions = stream.next_labelled()
        images, labels = images.to(dev), labels.to(dev)
        with autocast():
            f, g, s = model(images, tokenizer(captions).to(dev))
            loss = pretrain_loss(f.float(), g.float(), s.float(), labels, same_class_weight)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if log_every and (step % log_every == 0 or step == steps - 1):
            print(f"step {step:5d}  loss {loss.item():.4f}  scale {s.item():.1f}  "
                  f"{time.perf_counter() - t0:.0f}s", flush=True)
    wall = time.perf_counter() - t0
    model.eval()
    table = zero_shot_table(model, tokenizer, dev, model.image_size)
    card = {"model": name, "config": json.loads((Path(__file__).parent / "models" / "configs" / f"{name}.json").read_text()),
            "world_seed": seed, "seed": seed, "steps": steps, "batch_size": batch_size, "lr": lr, "warmup": warmup,
            "weight_decay": weight_decay, "same_class_weight": same_class_weight, "device": str(dev),
            "device_name": torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu",
            "precision": precision, "torch": torch.__version__, "wall_time_s": round(wall, 1),
            "n_params": sum(p.numel() for p in model.parameters()), "p_mnist_like": world.P_MNIST_LIKE,
            "zero_shot": table}
    path = save_embedded(model, card, out or embedded_checkpoint(name))
    card["zero_shot_fp16_cpu"] = shipped_zero_shot(path, name)   # what the shipped fp16 file gives on CPU
    path.with_suffix(".json").write_text(json.dumps(card, indent=2))
    return card


def shipped_zero_shot(path: str | Path, name: str = "tiny-vit") -> dict:
    """Zero-shot table of a saved checkpoint, re-loaded from disk and evaluated on CPU in fp32."""
    model, tokenizer = build_model(ModelConfig(name=name, pretrained=str(path)), "cpu")
    return zero_shot_table(model.eval(), tokenizer, torch.device("cpu"), model.image_size)


def save_embedded(model, card: dict, path: str | Path) -> Path:
    from safetensors.torch import save_file
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sd = {k: v.detach().to("cpu", torch.float16).contiguous() for k, v in model.clip.state_dict().items()}
    save_file(sd, str(path), metadata={"model": card["model"], "steps": str(card["steps"])})
    path.with_suffix(".json").write_text(json.dumps(card, indent=2))
    return path


def add_pretrain_command(sub) -> None:
    p = sub.add_parser("pretrain", help="pretrain the embedded tiny CLIP on the procedural world")
    p.add_argument("--model", default="tiny-vit")
    p.add_argument("--steps", type=int, default=1000)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=5e-4)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--same-class-weight", type=float, default=0.5)
    p.add_argument("--device", default="auto")
    p.add_argument("--out", default=None, help="output .safetensors (default: data/pretrained/<model>.safetensors)")
    p.set_defaults(func=_cmd_pretrain)


def _cmd_pretrain(args) -> int:
    card = pretrain(args.model, args.steps, args.batch_size, args.lr, seed=args.seed,
                    same_class_weight=args.same_class_weight, device=args.device, out=args.out)
    print(json.dumps(card["zero_shot"], indent=2))
    return 0 if all(math.isfinite(v["accuracy"]) for v in card["zero_shot"].values()) else 1
