"""Checks before a run allocates anything: the output folder, train.threads, and the memory the run needs.

Each failure is a clear message naming the key or the path, raised before the model is built, so a run that
cannot work costs seconds instead of an out-of-memory kill (or a misleading error) minutes later.

Memory estimate (bytes; fp32 weights, AdamW; an *estimate*, deliberately on the high side):

    weights      4 P                 P = all parameters of the architecture (built on the meta device)
    gradients    4 T                 T = trainable parameters (towers minus frozen blocks)
    AdamW        8 T                 exp_avg + exp_avg_sq
    teacher      4 P                 a deep copy of theta_0 when teacher.kind != none
    activations  4 b sum_blocks (30 N w + 4 h N^2)      per trained transformer block, b = per-process batch,
                                     N tokens, w width, h heads (Korthikanti et al. 2022, "Reducing Activation
                                     Recomputation", eq. 2 with 4-byte values, raised x1.7 to match peak RSS
                                     measured on CPU for tiny-vit and ViT-B-16); ResNet towers ~25e6 values
                                     per 224-pixel image; halved under bf16 autocast
    runtime      1.0 GiB             Python, torch and the datasets' bookkeeping
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

from ..config import ConfigError, RunConfig

log = logging.getLogger(__name__)
GiB = 1024 ** 3
RUNTIME_BYTES = int(1.0 * GiB)
CHECK_ENV = "TRACER_MEMORY_CHECK"      # "off": skip the memory refusal (the estimate is only an estimate)


def preflight(cfg: RunConfig, output_dir=None, device=None) -> None:
    """All checks; raises ConfigError / ValueError with the key or path named. ``device``: a torch.device,
    or None to resolve ``train.device`` as the run will."""
    check_threads(cfg.train.threads)
    if output_dir:
        check_output_dir(output_dir)
    check_memory(cfg, device)


def check_threads(threads: int) -> None:
    cpus = os.cpu_count() or 1
    if threads > cpus:
        raise ConfigError(f"train.threads={threads} is more than this machine's {cpus} CPU threads; "
                          f"use 0 (torch's default) or 1..{cpus}")


def check_output_dir(output_dir) -> None:
    """The output folder (and its checkpoints/ subfolder) must be a folder or creatable as one."""
    out = Path(output_dir).expanduser()
    for p in (out / "checkpoints", *(out / "checkpoints").parents):
        if p.exists():
            if not p.is_dir():
                raise ValueError(f"output folder {out}: {p} is a file, not a folder; choose another --out")
            if not os.access(p, os.W_OK | os.X_OK):
                raise ValueError(f"output folder {out}: cannot write in {p} (permission denied)")
            return


@dataclass(frozen=True)
class MemoryEstimate:
    weights: int
    gradients: int
    optimizer: int
    teacher: int
    activations: int
    runtime: int = RUNTIME_BYTES

    @property
    def total(self) -> int:
        return self.weights + self.gradients + self.optimizer + self.teacher + self.activations + self.runtime

    def describe(self) -> str:
        parts = ", ".join(f"{k} {getattr(self, k) / GiB:.1f}" for k in
                          ("weights", "gradients", "optimizer", "teacher", "activations", "runtime"))
        return f"~{self.total / GiB:.1f} GiB ({parts} GiB)"


def estimate_memory(cfg: RunConfig, batch: int | None = None, bf16: bool = False) -> MemoryEstimate:
    """The estimate in the module docstring for ``cfg`` (``batch``: per-process batch, default data.batch_size)."""
    import open_clip

    from ..models.clip import architecture_on_meta
    clip = architecture_on_meta(cfg.model.name)
    arch = open_clip.get_model_config(cfg.model.name) or {}
    n_all = sum(p.numel() for p in clip.parameters())
    b = cfg.data.batch_size if batch is None else batch
    tl = cfg.train.trainable_layers
    trains = cfg.method != "zeroshot"
    vision = _tower_values(arch.get("vision_cfg", {}), tl, image=True)
    text = 0 if cfg.train.freeze_text else _tower_values(arch.get("text_cfg", {}), tl, image=False)
    n_train = n_all if trains else 0
    if trains and (cfg.train.freeze_text or tl >= 0):     # frozen blocks need no gradients nor Adam state
        frozen = _frozen_parameters(clip, cfg.train.freeze_text, tl)
        n_train = max(n_all - frozen, 0)
    act = int(4 * b * (vision + text) * (0.5 if bf16 else 1.0)) if trains else 0
    return MemoryEstimate(weights=4 * n_all, gradients=4 * n_train, optimizer=8 * n_train,
                          teacher=4 * n_all if cfg.teacher.kind != "none" else 0, activations=act)


def _tower_values(tc: dict, trainable_layers: int, image: bool) -> float:
    """Saved activation values per sample of one tower (module docstring); only trained blocks count."""
    layers, width = tc.get("layers", 12), tc.get("width", 512)
    if isinstance(layers, (list, tuple)):                 # ResNet tower: scale with pixels and width
        return 25e6 * (tc.get("image_size", 224) / 224) ** 2 * (width / 64)
    if image:
        size, patch = tc.get("image_size", 224), tc.get("patch_size", 16)
        size = size[0] if isinstance(size, (list, tuple)) else size
        tokens = (size // patch) ** 2 + 1
        heads = max(width // tc.get("head_width", 64), 1)
    else:
        tokens, heads = tc.get("context_length", 77), tc.get("heads", 8)
    blocks = layers if trainable_layers < 0 else min(trainable_layers, layers)
    return blocks * (30 * tokens * width + 4 * heads * tokens ** 2)


def _frozen_parameters(clip, freeze_text: bool, trainable_layers: int) -> int:
    """Parameters apply_layer_freezing would freeze, counted on the meta model (no weights touched)."""
    from ..models import apply_layer_freezing
    apply_layer_freezing(clip, freeze_text, trainable_layers)
    return sum(p.numel() for p in clip.parameters() if not p.requires_grad)


def available_memory() -> int | None:
    """Bytes this process may still use: MemAvailable, capped by a cgroup v2/v1 limit; None if unknown."""
    avail = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                avail = int(line.split()[1]) * 1024
    except OSError:
        try:
            avail = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (ValueError, OSError, AttributeError):
            pass
    for limit_file, usage_file in (("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
                                   ("/sys/fs/cgroup/memory/memory.limit_in_bytes",
                                    "/sys/fs/cgroup/memory/memory.usage_in_bytes")):
        try:
            limit = Path(limit_file).read_text().strip()
            if limit != "max" and int(limit) < 2 ** 60:
                left = int(limit) - int(Path(usage_file).read_text().strip())
                avail = left if avail is None else min(avail, left)
            break
        except (OSError, ValueError):
            continue
    return avail


def check_memory(cfg: RunConfig, device=None) -> MemoryEstimate | None:
    """Refuse a CPU run whose estimate exceeds the available memory; warn for CUDA (where an out-of-memory
    error is clean and bf16/fused kernels often need less than the estimate)."""
    import torch

    from .distributed import env_world
    from .device import make_autocast, resolve_device
    if os.environ.get(CHECK_ENV, "").lower() == "off":
        return None
    dev = device if device is not None else resolve_device(cfg.train.device)
    world = env_world()[1]
    bf16 = make_autocast(dev, cfg.train.precision)[0] == "bf16"
    est = estimate_memory(cfg, batch=max(cfg.data.batch_size // max(world, 1), 1), bf16=bf16)
    if dev.type == "cuda":
        free, _ = torch.cuda.mem_get_info(dev)
        if est.total > free:
            log.warning("this run may not fit on %s: estimated %s, %.1f GiB free; lower data.batch_size if it "
                        "runs out of memory", dev, est.describe(), free / GiB)
        return est
    avail = available_memory()
    local = int(os.environ.get("LOCAL_WORLD_SIZE", world))   # CPU ranks on this machine share its memory
    if avail is not None and est.total * local > avail:
        raise ConfigError(
            f"not enough memory for this run: {cfg.model.name} with data.batch_size={cfg.data.batch_size} needs "
            f"an estimated {est.describe()}{f' per process x {local}' if local > 1 else ''}, but this machine has "
            f"{avail / GiB:.1f} GiB available. Lower data.batch_size, freeze layers (train.trainable_layers, "
            f"train.freeze_text) or use a GPU (train.device=cuda); {CHECK_ENV}=off skips this check")
    return est
