"""Assemble what a run needs from its config: device, seeded model, teacher, data, method, optimizer."""
from __future__ import annotations

import contextlib
import platform
import random
from dataclasses import dataclass, field
from typing import Callable, Iterator

import numpy as np
import torch

from ..config import RunConfig
from ..data.runsets import check_run_data, load_run_sets
from ..methods import create_method
from ..methods.base import MethodContext
from ..models import apply_layer_freezing, build_model, count_parameters
from ..teachers import teacher_from_config
from . import distributed, preflight
from .device import make_autocast, make_scaler, resolve_device   # noqa: F401  (also this module's API)
from ..data.loader import distinct_images
from .batches import batch_iterator
from .schedule import steps_for_epochs
from .representations import build_similarity_tracker


@dataclass
class Parts:
    cfg: RunConfig
    device: torch.device
    precision: str
    autocast: Callable[[], contextlib.AbstractContextManager]
    student: torch.nn.Module
    tokenizer: object
    teacher: object
    method: object
    optimizer: torch.optim.Optimizer
    params: list
    batches: Iterator
    eval_sets: dict
    total_steps: int
    n_params: int = 0
    n_trainable: int = 0
    versions: dict = field(default_factory=dict)
    similarity: object = None      # SimilarityTracker (probe + pretrained features) or None when off
    dist: distributed.Dist = field(default_factory=distributed.Dist)   # torchrun rank/world; world 1 = one process
    scaler: object = None          # torch.amp.GradScaler under fp16 autocast, else None


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def gpu_settings(cfg: RunConfig, device: torch.device, student: torch.nn.Module) -> None:
    """train.tf32 (CUDA matmuls and convolutions) and train.channels_last (NHWC weights); CPU untouched."""
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = cfg.train.tf32
        torch.backends.cudnn.allow_tf32 = cfg.train.tf32
    if cfg.train.channels_last:
        student.to(memory_format=torch.channels_last)


def compile_towers(*models) -> None:
    """train.compile: compile each tower's forward in place (``Module.compile``), so the parameter objects the
    optimizer, the teacher and the methods hold stay the same (a wrapper would break that, pitfall P2)."""
    for m in models:
        clip = getattr(m, "clip", None)
        for name in ("visual", "transformer", "text"):
            tower = getattr(clip, name, None)
            if isinstance(tower, torch.nn.Module):
                tower.compile()


def resolve_steps(cfg: RunConfig, train_set) -> RunConfig:
    """train.steps = 0: T = epochs * ceil(distinct images / global batch) (spec §1.1), written into the config
    so the schedule, the teacher and the methods (LP-FT's probe stage, GRACE's K) all see the same T."""
    if cfg.train.steps > 0:
        return cfg
    return cfg.replace(**{"train.steps": steps_for_epochs(cfg.train.epochs, distinct_images(train_set),
                                                          cfg.data.batch_size)})


def _versions() -> dict[str, str]:
    import open_clip
    return {"python": platform.python_version(), "torch": torch.__version__, "open_clip": open_clip.__version__}


def build_parts(cfg: RunConfig) -> Parts:
    preflight.check_threads(cfg.train.threads)      # 100000 threads would fail later as an allocation error
    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)
    d, device_name = distributed.setup(cfg.train.device)     # joins torchrun's process group, if any
    try:
        return _build(cfg, d, device_name)
    except BaseException:
        distributed.teardown(d)
        raise


def _build(cfg: RunConfig, d: distributed.Dist, device_name: str) -> Parts:
    seed_everything(cfg.train.seed)
    device = resolve_device(device_name)
    preflight.check_memory(cfg, device)             # refuse before allocating what the machine cannot hold
    precision, autocast = make_autocast(device, cfg.train.precision)
    student, tokenizer = build_model(cfg.model, device)
    gpu_settings(cfg, device, student)
    distributed.broadcast_module(student, d)                 # identical theta_0 on every rank, same objects
    apply_layer_freezing(student.clip, cfg.train.freeze_text, cfg.train.trainable_layers)
    size, dc = student.image_size, cfg.data
    check_run_data(dc)             # declared sets, class lists, paths: a clear error before any step
    train_set, eval_sets = load_run_sets(dc, size)
    cfg = resolve_steps(cfg, train_set)
    ctx = MethodContext(tokenizer, list(train_set.classnames), list(train_set.templates), device, distributed.gather)
    method = create_method(cfg, student, ctx)
    total = cfg.train.steps
    teacher = teacher_from_config(cfg.teacher, student, total)    # deep copy of theta_0, before any step
    # pretrained per-layer features on the fixed probe, read now while the student is still theta_0
    similarity = (build_similarity_tracker(cfg, student, tokenizer, eval_sets, autocast)
                  if method.trains and d.is_main else None)
    params = method.trainable_parameters()
    o = cfg.optim
    # one param group, weight decay on everything incl. biases, LN gains and logit_scale (spec §6)
    # fused: one kernel over all tensors; ~3x faster than the per-tensor loop on CPU (bench: 51 vs 143 ms for
    # the tiny model's 7.7 M parameters, most of them the token embedding) with the same update rule
    optimizer = torch.optim.AdamW(params, lr=o.lr, weight_decay=o.weight_decay, betas=(o.beta1, o.beta2), eps=o.eps,
                                  fused=device.type in ("cpu", "cuda"))
    distributed.shard_size(dc.batch_size, d)                  # clear error if the global batch does not split
    # a method that never steps (zero-shot, the `eval` command) needs no batches, so no batch-size check either
    batches = (batch_iterator(train_set, tokenizer, dc.batch_size, cfg.train.seed, device, d.rank, d.world_size,
                              dc.num_workers, dc.augment, cfg.train.channels_last) if method.trains else iter(()))
    if cfg.train.compile:      # after the teacher's deep copy and the similarity probe's pretrained features
        compile_towers(student, *([teacher.module] if teacher is not None else []))
    if d.rank > 0:
        torch.manual_seed(cfg.train.seed + d.rank)            # per-rank randomness (augmentations, PGD starts)
    n_params, n_trainable = count_parameters(student)
    return Parts(cfg, device, precision, autocast, student, tokenizer, teacher, method, optimizer, params,
                 batches, eval_sets, total, n_params, n_trainable, _versions(), similarity, d,
                 make_scaler(device, precision))
