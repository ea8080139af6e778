"""Data-parallel training with torch.distributed, launched by torchrun (one process per GPU, or per CPU slot).

    torchrun --nproc_per_node=4 -m tracer_core train --preset tracer --set data.batch_size=512

What each rank does (rank = torchrun's RANK, world = WORLD_SIZE):

* ``data.batch_size`` stays the *global* batch. All ranks draw the same seeded permutation and template
  choices; rank r trains on rows [r*b, (r+1)*b) of each global batch, b = batch_size / world. Concatenating the
  ranks' shards in rank order gives exactly the single-process batch.
* Contrastive methods all-gather image and text features with autograd (spec P8: the reference is one process
  with B = 512, so contrastive, KD and statistics matrices are global-batch matrices). Every rank computes the
  same global loss; the all-gather's backward sums the ranks' gradients for the local rows, so *averaging* the
  parameter gradients over ranks gives the single-process gradient. Local terms (cross-entropy, FT2B, GRACE)
  are per-shard means, and averaging gives the global mean too.
* Gradients are averaged with one coalesced all-reduce per dtype after ``backward`` and before clipping.
  Why not ``DistributedDataParallel``: its reducer is armed by the wrapper's ``forward``, but methods reach the
  student through several entry points (``forward``, ``encode_image``, LoRA parametrisations, GRACE's extra
  backward passes for curvature and weight perturbation, which must *not* be synchronised), and a wrapper would
  change which object the methods and the teacher hold (pitfall P2). One explicit all-reduce keeps every parameter
  object and the step order the single-process loop has; on the tiny model the lost overlap is irrelevant and
  on ViT-B it is one NCCL all-reduce of the gradients per step.
* Per-rank state stays per rank where the reference has no global version: FT2B's simulated-OOD draws and
  GRACE's PGD starts (rank r > 0 reseeds with seed + r), and GRACE's curvature scores, which each rank
  estimates from its own shard (so its rank masks may differ between ranks; the weights never do).
* Evaluation is sharded: each rank scores a contiguous slice of every eval set and the metric accumulators
  are merged in rank order, so the numbers equal one process's (the class-sorted per-batch ECE included).
  Rank 0 alone reports through hooks (so only it writes the run store), computes the CKA probe and saves
  checkpoints. A cancel seen by rank 0 is shared with all ranks at the end of the step.

Backend: NCCL on CUDA (each rank on ``cuda:LOCAL_RANK``), gloo on CPU (tests run 2 CPU ranks).
"""
from __future__ import annotations

import contextlib
import datetime
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


class RankLost(RuntimeError):
    """A collective failed: another torchrun rank crashed, was killed or cannot be reached."""


@contextlib.contextmanager
def collective(what: str):
    """Turn a failed collective inside this block into :class:`RankLost`, naming what was going on. Only
    communication errors in a process group are converted (a single process, an out-of-memory or a bug in
    a loss keeps its own error)."""
    try:
        yield
    except RuntimeError as e:
        text = str(e)
        lost = isinstance(e, dist.DistError) or "gloo" in text or "NCCL" in text or "peer" in text
        if not (lost and dist.is_initialized() and dist.get_world_size() > 1):
            raise
        raise RankLost(f"{what} failed: another torchrun rank stopped or cannot be reached "
                       f"(see torchrun's report for which one and why). {text}") from e


@dataclass(frozen=True)
class Dist:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    owns_group: bool = False    # True when this module initialised the process group (and must destroy it)

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def describe(self, device: torch.device) -> str:
        if not self.enabled:
            return str(device)
        return f"{device} x{self.world_size} (torch.distributed, {dist.get_backend()})"


def env_world() -> tuple[int, int, int]:
    """(rank, world_size, local_rank) from torchrun's environment; (0, 1, 0) outside torchrun."""
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)), int(os.environ.get("LOCAL_RANK", 0))


def setup(device_name: str) -> tuple[Dist, str]:
    """Join the process group torchrun describes (if any) -> (Dist, device name for this rank).

    ``device_name`` is ``train.device``: "auto" picks ``cuda:LOCAL_RANK`` when CUDA is there, else the CPU.
    """
    rank, world, local = env_world()
    if world <= 1:
        return Dist(), device_name
    cuda = device_name.startswith("cuda") or (device_name == "auto" and torch.cuda.is_available())
    if cuda:
        if torch.cuda.device_count() <= local:
            raise ValueError(f"rank {rank} needs cuda:{local} but only {torch.cuda.device_count()} CUDA devices "
                             "are visible; start torchrun with --nproc_per_node <= the number of GPUs")
        torch.cuda.set_device(local)
        device_name = f"cuda:{local}"
    elif device_name == "auto":
        device_name = "cpu"
    owns = not dist.is_initialized()
    if owns:
        # long timeout: ranks > 0 wait in the next collective while rank 0 alone computes the CKA probe and
        # writes checkpoints, which for large models on slow disks can outlast NCCL's 10-minute default
        dist.init_process_group(backend="nccl" if cuda else "gloo", timeout=datetime.timedelta(hours=2))
    return Dist(rank, world, local, owns), device_name


def teardown(d: Dist) -> None:
    if d.owns_group and dist.is_initialized():
        dist.destroy_process_group()


def shard_size(batch_size: int, d: Dist) -> int:
    """Per-rank batch of a global ``batch_size``; it must divide evenly so every rank's shard is equal."""
    if batch_size % d.world_size:
        raise ValueError(f"data.batch_size={batch_size} is the global batch and must be divisible by the "
                         f"{d.world_size} torchrun processes (e.g. {batch_size // d.world_size * d.world_size})")
    return batch_size // d.world_size


def shard_range(n: int, d: Dist) -> tuple[int, int]:
    """Rank r's contiguous rows [lo, hi) of n (the ranks' ranges concatenated in rank order are [0, n))."""
    return n * d.rank // d.world_size, n * (d.rank + 1) // d.world_size


def merge_shards(acc, d: Dist):
    """Every rank's metric accumulator merged in rank order (any object with ``merge``), on every rank."""
    if not d.enabled:
        return acc
    parts: list = [None] * d.world_size
    with collective("gathering evaluation results"):
        dist.all_gather_object(parts, acc)
    merged = parts[0]
    for other in parts[1:]:
        merged.merge(other)
    return merged


def gather(x: torch.Tensor) -> torch.Tensor:
    """(b, ...) local rows -> (world*b, ...) rows of all ranks in rank order; differentiable.

    Identity outside a process group. The backward is a reduce-scatter: each rank receives the sum over all
    ranks of the gradient for its own rows (the functional collective that torch recommends over the
    deprecated ``torch.distributed.nn.all_gather``; it works on gloo and NCCL).
    """
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return x
    from torch.distributed._functional_collectives import all_gather_single_autograd, wait_tensor
    with collective("gathering features"):
        return wait_tensor(all_gather_single_autograd(x.contiguous(), 0, dist.group.WORLD))


@torch.no_grad()
def broadcast_module(module: torch.nn.Module, d: Dist) -> None:
    """Copy rank 0's parameters and buffers to every rank, in place (the parameter objects stay the same)."""
    if d.enabled:
        with collective("broadcasting rank 0's weights"):
            for t in list(module.parameters()) + list(module.buffers()):
                dist.broadcast(t.data, src=0)


@torch.no_grad()
def average_gradients(params: list[torch.Tensor], d: Dist) -> None:
    """grad <- mean over ranks of grad, one flat all-reduce per dtype.

    A parameter that no rank's backward reached keeps ``grad = None``, as in one process, so AdamW skips it
    (LP-FT's probe stage: a zero gradient would still apply weight decay to the frozen-in-effect tower). One
    that only some ranks reached counts as zeros on the others, so every rank sends buffers of one layout.
    """
    if not d.enabled or not params:
        return
    has = torch.tensor([p.grad is not None for p in params], dtype=torch.float32, device=params[0].device)
    with collective("agreeing on which parameters have gradients"):
        dist.all_reduce(has)                                         # (P,) how many ranks have each grad
    by_dtype: dict[torch.dtype, list[torch.Tensor]] = {}
    for p, n_ranks in zip(params, has.tolist()):
        if n_ranks == 0:
            continue
        if p.grad is None:
            p.grad = torch.zeros_like(p)
        by_dtype.setdefault(p.grad.dtype, []).append(p)
    for group in by_dtype.values():
        flat = torch.cat([p.grad.reshape(-1) for p in group])       # (sum of numels,)
        with collective("averaging gradients"):
            dist.all_reduce(flat)                                    # SUM: gloo has no AVG
        flat /= d.world_size
        offset = 0
        for p in group:
            n = p.grad.numel()
            p.grad.copy_(flat[offset:offset + n].view_as(p.grad))
            offset += n


def mean_scalar(value: torch.Tensor, d: Dist) -> torch.Tensor:
    """Mean of a scalar over ranks (NaN on any rank gives NaN everywhere, so all ranks stop together)."""
    if not d.enabled:
        return value
    t = value.detach().float().reshape(1).clone()
    with collective("averaging the loss"):
        dist.all_reduce(t)
    return (t / d.world_size).reshape(())


def union_of(items: list[int], d: Dist) -> set[int]:
    """Union over ranks of small int lists (e.g. unreadable image indices); one 1-float all-reduce per call,
    an object all-gather only when some rank has items."""
    if not d.enabled:
        return set(items)
    n = torch.tensor([float(len(items))])
    if dist.get_backend() == "nccl":
        n = n.cuda()
    with collective("counting unreadable images"):
        dist.all_reduce(n)
    if n.item() == 0:
        return set()
    parts: list = [None] * d.world_size
    with collective("gathering unreadable image indices"):
        dist.all_gather_object(parts, list(items))
    return {i for p in parts for i in p}


def any_rank(flag: bool, d: Dist) -> bool:
    """True on every rank when ``flag`` is true on any rank (e.g. rank 0 saw a cancel)."""
    if not d.enabled:
        return flag
    t = torch.tensor([1.0 if flag else 0.0])
    if dist.get_backend() == "nccl":
        t = t.cuda()
    with collective("sharing the stop flag"):
        dist.all_reduce(t)
    return bool(t.item() > 0)
