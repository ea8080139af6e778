"""The training loop: read it top to bottom (spec §1.4 pseudo-code, §6 optimiser).

    for s in 0..T-1: set lr(s) -> batch -> method terms (student fwd, teacher fwd for s > 0, stats)
                     -> backward -> [torchrun: average gradients] -> optional clip -> AdamW step
                     -> teacher.update(student, s) -> method.on_step_end(s) -> hooks
    method.finalize() -> final evaluation -> final checkpoint

It reports only through hooks; it never touches the run store. Under torchrun every rank runs this loop on
its shard of each global batch; only rank 0 calls the hooks, evaluates and saves (training/distributed.py).
"""
from __future__ import annotations

import math
import time
from collections import defaultdict
from pathlib import Path

import torch

from ..config import RunConfig
from ..losses import total_loss
from ..metrics.summaries import summarize
from . import distributed
from .checkpoint import save_checkpoint
from .evaluate import evaluate_sets
from .hooks import Hooks, RunInfo, RunSummary
from .schedule import cosine_lr, grad_clip_norm
from .setup import Parts, build_parts


class TrainingError(RuntimeError):
    """Training cannot go on (e.g. a non-finite loss); the message says at which step and why."""


def _step_scalars(terms, stats, loss, lr, grad_norm, parts: Parts) -> dict:
    scalars = {("loss", "total"): float(loss), ("lr", ""): lr,
               ("logit_scale", ""): float(parts.student.logit_scale.detach())}
    scalars.update({("loss", k): float(v.detach()) for k, v in terms.items()})
    if grad_norm is not None:
        scalars[("grad_norm", "")] = float(grad_norm)
    if parts.teacher is not None:
        scalars[("teacher_weight", "")] = parts.teacher.last_weight
    scalars.update(stats)          # already (name, context), e.g. ("teacher_student_kl", "img")
    return scalars


def _train_step(parts: Parts, step: int, cfg: RunConfig):
    """One optimisation step; returns (terms, stats, loss, lr, grad_norm, seconds blocked on the data)."""
    lr = cosine_lr(step, cfg.optim.lr, cfg.optim.warmup_steps, parts.total_steps, cfg.optim.min_lr)
    lr *= parts.method.lr_scale(step)                  # 1.0 except in stage-wise methods (LP-FT's probe)
    for group in parts.optimizer.param_groups:
        group["lr"] = lr
    t_data = time.perf_counter()
    batch = next(parts.batches)
    waited = time.perf_counter() - t_data              # file sets: ~0 while the loader workers keep up
    with parts.autocast():
        out = parts.method.step(batch, step, parts.teacher)
        loss = total_loss(out.terms)
    logged = distributed.mean_scalar(loss, parts.dist)   # torchrun: mean over ranks, so all ranks agree on NaN
    if not torch.isfinite(logged):
        bad = {k: float(v.detach()) for k, v in out.terms.items()}
        raise TrainingError(f"non-finite loss at step {step}: {bad}. Lower optim.lr or check the data.")
    parts.optimizer.zero_grad(set_to_none=True)
    scaler = parts.scaler                              # fp16 only: scaled backward, unscale before clipping
    with distributed.collective("the backward pass (all-gather gradients)"):
        (scaler.scale(loss) if scaler is not None else loss).backward()
    distributed.average_gradients(parts.params, parts.dist)        # no-op in one process
    clip = grad_clip_norm(step, cfg.optim.max_grad_norm, cfg.optim.grad_norm_multiplier, parts.total_steps)
    if scaler is not None and clip > 0:
        scaler.unscale_(parts.optimizer)
    grad_norm = torch.nn.utils.clip_grad_norm_(parts.params, clip) if clip > 0 else None
    if scaler is not None:
        scaler.step(parts.optimizer)                   # skipped when the scaled gradients overflowed
        scaler.update()
    else:
        parts.optimizer.step()
    if parts.teacher is not None:
        parts.teacher.update(parts.student, step)     # after the optimizer step: absorbs theta_{s+1}
    parts.method.on_step_end(step)
    return out.terms, out.stats, logged.detach(), lr, grad_norm, waited


def _skipped_images(parts: Parts, seen: set) -> int:
    """Distinct unreadable train images met so far, over all ranks (data/loader.py substitutes them)."""
    local = getattr(parts.batches, "skipped", None)
    if local is None:                                   # in-memory sets cannot have unreadable files
        return 0
    new = sorted(local - seen)
    seen |= distributed.union_of(new, parts.dist)
    return len(seen)


def _evaluate(parts: Parts, step: int, final: bool):
    report = evaluate_sets(step, parts.student, parts.tokenizer, parts.eval_sets, parts.cfg.data.eval_batch_size,
                           parts.device, method=parts.method, teacher=parts.teacher if final else None,
                           autocast=parts.autocast(), dist=parts.dist)     # torchrun: sharded over the ranks
    if parts.similarity is not None:    # per-layer CKA/SVCCA on the fixed probe, teacher pairs at every eval
        report.similarities = parts.similarity.rows(parts.student, parts.teacher)
    return report


def _eval_point(parts: Parts, hooks: Hooks, step: int, final: bool):
    """Every rank evaluates its shard; rank 0 (the only rank with real hooks under torchrun) reports."""
    result = _evaluate(parts, step, final)
    hooks.on_eval(result)
    return result


def _checkpoint(parts: Parts, output_dir, step: int, hooks: Hooks) -> str:
    if not (output_dir and parts.dist.is_main):
        return ""
    name = f"step_{step:06d}.safetensors"
    path = save_checkpoint(Path(output_dir) / "checkpoints" / name, student=parts.student,
                           teacher=parts.teacher, method=parts.method, optimizer=None, step=step,  # no Adam state: short runs are not resumed
                           config=parts.cfg.to_dict())
    hooks.on_checkpoint(step, str(path))
    return str(path)


def run(config: RunConfig, hooks: Hooks | None = None, *, output_dir: str | Path | None = None) -> RunSummary:
    """Fine-tune according to ``config``; report through ``hooks``; return the run summary.

    Under torchrun (WORLD_SIZE > 1) this joins the process group; only rank 0 calls ``hooks``.
    """
    parts = build_parts(config)
    try:
        return _run(parts, (hooks or Hooks()) if parts.dist.is_main else Hooks(), output_dir)
    finally:
        distributed.teardown(parts.dist)


def _run(parts: Parts, hooks: Hooks, output_dir) -> RunSummary:
    config, trains = parts.cfg, parts.method.trains
    if output_dir and parts.dist.is_main:   # created once here: a checkpoint never recreates a deleted folder
        Path(output_dir).mkdir(parents=True, exist_ok=True)
    hooks.on_start(RunInfo(config.to_dict(), parts.total_steps, parts.dist.describe(parts.device), parts.precision,
                           parts.n_params, parts.n_trainable, parts.versions, parts.dist.world_size))
    series: dict[tuple[str, str], list] = defaultdict(list)    # step statistics and step time, for the summaries
    status, error, step_done, ckpt, t0 = "done", "", 0, "", time.perf_counter()
    bad: set = set()     # dataset indices of unreadable train images (all ranks)
    try:
        first = _eval_point(parts, hooks, 0, final=not trains) if config.train.eval_at_start or not trains else None
        for step in range(parts.total_steps if trains else 0):
            t_step = time.perf_counter()
            terms, stats, loss, lr, grad_norm, waited = _train_step(parts, step, config)
            scalars = _step_scalars(terms, stats, loss, lr, grad_norm, parts)
            # timed after the scalars' .item() calls: on CUDA they wait for this step's backward and
            # optimizer kernels, so the step time is the real per-step cost, not the launch time
            scalars[("step_time", "")] = time.perf_counter() - t_step
            # global images per second of the whole step (data wait included) and the part blocked on data
            scalars[("images_per_s", "")] = config.data.batch_size / scalars[("step_time", "")]
            scalars[("data_wait", "")] = waited
            scalars[("skipped_images", "train")] = float(_skipped_images(parts, bad))
            hooks.on_step(step, scalars)
            for key, value in stats.items():     # summarised under the same (name, context) as logged
                series[key].append((step, value))
            if step >= 2:   # steps 0-1 pay one-off costs (lazy init, allocator); the bench reads the mean
                for key in (("step_time", ""), ("images_per_s", ""), ("data_wait", "")):
                    series[key].append((step, scalars[key]))
            step_done = step + 1
            if config.train.eval_every and step_done % config.train.eval_every == 0 and step_done < parts.total_steps:
                _eval_point(parts, hooks, step_done, final=False)
            if config.train.checkpoint_every and step_done % config.train.checkpoint_every == 0:
                ckpt = _checkpoint(parts, output_dir, step_done, hooks) or ckpt
            if distributed.any_rank(hooks.should_stop(), parts.dist):   # rank 0's cancel stops every rank
                status = "cancelled"
                break
        if trains:
            parts.method.finalize()                   # e.g. WiSE-FT's interpolation, before the final eval
            final = _eval_point(parts, hooks, step_done, final=True)
            if config.train.save_final:
                ckpt = _checkpoint(parts, output_dir, step_done, hooks) or ckpt
        else:
            final = first
    except BaseException as e:   # KeyboardInterrupt too: the run still ends with a status
        status, error = "failed", f"{type(e).__name__}: {e}"
        hooks.on_end(_summary(status, step_done, t0, None, series, error, ckpt, len(bad), config))
        raise
    summary = _summary(status, step_done, t0, final, series, error, ckpt, len(bad), config)
    hooks.on_end(summary)
    return summary


def _summary(status, steps, t0, final, series, error, ckpt, skipped, config) -> RunSummary:
    wall = time.perf_counter() - t0
    summaries = {f"{n}/{c}": summarize([s for s, _ in pts], [v for _, v in pts]) for (n, c), pts in series.items()}
    times = [v for _, v in series.get(("step_time", ""), [])]         # steps >= 2
    ips = config.data.batch_size * len(times) / sum(times) if times and sum(times) > 0 else math.nan
    return RunSummary(status=status, steps=steps, wall_time_s=wall, steps_per_s=steps / wall if wall > 0 else math.nan,
                      final_eval=final.metrics if final is not None else {}, summaries=summaries, error=error,
                      checkpoint=ckpt, images_per_s=ips, skipped_images=skipped)
