"""Per-step rows, in process: our FLYP step vs open_clip_train's own step, and TRACER / FLYP per step on a
grid of batch sizes and widths against the teacher-forward floor (FLYP step + one no-grad forward).

Every timing is interleaved round by round (ABBA order) and reported as the median of per-round paired
ratios, so a drifting load on the shared machine cancels.
"""
from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

from ..common import interleave, paired_ratio, spread
from ..suite import Row

WARMUP = 2


def _sync(device: str):
    import torch
    return torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)


def _parts(preset: str, device: str, steps: int, extra: list[str]):
    from tracer_core.config import load_preset
    from tracer_core.training.setup import build_parts
    over = [f"train.device={device}", 'data.eval_sets=["mnist"]', "data.max_eval_samples=16",
            "train.similarity_probe=0", f"train.steps={steps + WARMUP + 2}"] + extra
    return build_parts(load_preset(preset, over))


def _timed_step(parts, device: str):
    from tracer_core.training.loop import _train_step
    sync, counter = _sync(device), {"step": 0}

    def fn() -> float:
        sync()
        t0 = time.perf_counter()
        _train_step(parts, counter["step"], parts.cfg)
        sync()
        counter["step"] += 1
        return time.perf_counter() - t0
    return fn


# -- open_clip_train's own step --------------------------------------------------------------------------

class _Loader(list):
    """What train_one_epoch reads from data['train'].dataloader: an iterable with num_batches / num_samples."""

    @property
    def num_batches(self):
        return len(self)

    @property
    def num_samples(self):
        return sum(len(b[0]) for b in self)


def _open_clip_epoch(clip, batches, device: str):
    """One call of open_clip_train.train.train_one_epoch over ``batches`` (its loop, loss, AdamW, clamp).

    AdamW as open_clip_train.main builds it (torch default implementation, wd on all but gains/biases is
    their choice; here one group, as in ours, so the optimiser work is the same size)."""
    import torch
    from open_clip import ClipLoss
    from open_clip_train.train import train_one_epoch

    args = SimpleNamespace(device=device, precision="amp_bf16" if device.startswith("cuda") else "fp32",
                           distill=False, accum_freq=1, skip_scheduler=True, horovod=False, grad_clip_norm=None,
                           log_every_n_steps=10 ** 9, batch_size=len(batches[0][0]), world_size=1, rank=0,
                           local_rank=0, wandb=False, save_logs=False)
    opt = torch.optim.AdamW([p for p in clip.parameters() if p.requires_grad], lr=1e-5, weight_decay=0.1)
    loader = _Loader(batches)
    data = {"train": SimpleNamespace(dataloader=loader, set_epoch=lambda e: None)}
    loss = ClipLoss()
    sync = _sync(device)

    def fn() -> float:
        sync()
        t0 = time.perf_counter()
        train_one_epoch(clip, data, loss, 0, opt, None, None, None, args)
        sync()
        return (time.perf_counter() - t0) / len(batches)      # per step
    return fn


def flyp_vs_open_clip(quick: bool, device: str) -> list[Row]:
    """Same tiny model (embedded weights), same batch (64): our FLYP step vs open_clip_train's step."""
    import copy
    rounds, per = (2, 2) if quick else (7, 4)
    ours = _parts("flyp", device, rounds * per, [])
    clip = copy.deepcopy(ours.student.clip).train()
    clip.output_dict = True                                  # open_clip_train reads model_out["logit_scale"]
    # their loop feeds normalised images (our ClipModel normalises inside its forward)
    batches = []
    for _ in range(per):
        b = next(ours.batches)
        batches.append((((b.images - ours.student.mean) / ours.student.std).contiguous(), b.tokens))
    theirs = _open_clip_epoch(clip, batches, device)
    step = _timed_step(ours, device)

    def ours_fn() -> float:
        return sum(step() for _ in range(per)) / per
    for _ in range(WARMUP):
        ours_fn(), theirs()
    t = interleave({"ours": ours_fn, "open_clip": theirs}, rounds)
    med, lo, hi = paired_ratio(t["ours"], t["open_clip"])
    return [Row("our FLYP step vs open_clip_train's step (tiny model, batch 64)", "open_clip_train.train_one_epoch",
                f"{spread(t['ours'])[0]:.3f} s", f"{spread(t['open_clip'])[0]:.3f} s", med, lo, hi, "≤ 1.05", 1.05,
                note=f"{rounds} rounds x {per} steps; ours: fused AdamW; theirs: torch's default AdamW")]


# -- TRACER / FLYP grid ------------------------------------------------------------------------------------

def _register_wide(tmp: Path) -> str:
    """tiny-vit with every width doubled (x2), registered with open_clip under 'tiny-vit-x2' (random init)."""
    import open_clip

    from tracer_core.models.clip import CONFIG_DIR
    cfg = json.loads((CONFIG_DIR / "tiny-vit.json").read_text())
    cfg["embed_dim"] *= 2
    cfg["vision_cfg"]["width"] *= 2
    cfg["text_cfg"]["width"] *= 2
    cfg["text_cfg"]["heads"] *= 2
    path = tmp / "tiny-vit-x2.json"
    path.write_text(json.dumps(cfg))
    open_clip.add_model_config(path)
    return "tiny-vit-x2"


def _teacher_forward(parts, device: str):
    import torch
    batch, sync = next(parts.batches), _sync(device)

    def fn() -> float:
        sync()
        t0 = time.perf_counter()
        with torch.no_grad(), parts.autocast():
            parts.teacher(batch.images, batch.tokens)
        sync()
        return time.perf_counter() - t0
    return fn


QUICK_DATA = ["data.train_set=synthetic", 'data.eval_sets=["synthetic"]', "model.pretrained=none"]


def _grid_point(batch: int, model: list[str], label: str, rounds: int, device: str, quick: bool = False) -> Row:
    sets = [f"data.batch_size={batch}"] + (QUICK_DATA if quick else []) + model
    flyp, tracer = _parts("flyp", device, rounds, sets), _parts("tracer", device, rounds, sets)
    fns = {"flyp": _timed_step(flyp, device), "tracer": _timed_step(tracer, device),
           "forward": _teacher_forward(tracer, device)}
    for _ in range(WARMUP):
        for f in fns.values():
            f()
    # step 0 has no distillation (spec: teacher used for step > 0); warm-up has passed it
    t = interleave(fns, rounds)
    med, lo, hi = paired_ratio(t["tracer"], t["flyp"])
    floor = spread([(f + w) / f for f, w in zip(t["flyp"], t["forward"])])[0]
    return Row(f"TRACER / FLYP per step, batch {batch}, width {label}", f"teacher-forward floor {floor:.2f}",
               f"{spread(t['tracer'])[0]:.3f} s", f"{spread(t['flyp'])[0]:.3f} s", med, lo, hi, "≤ 1.4", 1.4,
               note=f"floor = (FLYP step + no-grad forward) / FLYP step; {rounds} rounds")


def tracer_grid(quick: bool, device: str) -> list[Row]:
    # 10 interleaved rounds: with 4 the median of one cell swung 1.30 -> 1.49 between two quiet runs (min-max
    # 1.21-1.61), so which cell "missed" moved from run to run; 10 rounds add ~50 s to the suite
    rounds = 2 if quick else 10
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-wide-") as tmp:
        wide = ["model.name=" + _register_wide(Path(tmp)), "model.pretrained=none"]
        grid = [(32, [], "x1"), (32, wide, "x2")] if quick else \
            [(b, m, lab) for m, lab in (([], "x1"), (wide, "x2")) for b in (32, 64, 128)]
        if device.startswith("cuda"):
            grid.append((64, ["model.name=ViT-B-16", "model.pretrained=none"], "ViT-B/16"))
        for batch, model, label in grid:
            rows.append(Row.guard(f"TRACER / FLYP per step, batch {batch}, width {label}",
                                  lambda: _grid_point(batch, model, label, rounds, device, quick)))
    return rows
