"""How training reports: a small hook protocol (torch-free, store-free).

The loop calls these methods; whoever listens (the run writer, a progress bar, a test) implements them.
Training never imports the store: this module is the whole contract between the two.

Scalars are keyed by ``(name, context)``: ``("teacher_student_kl", "combined")``, ``("loss", "clip_loss")``,
``("lr", "")``. A series is data (run, name, context, step, value), never a mangled key string.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

ScalarKey = tuple[str, str]


@dataclass
class RunInfo:
    """What the loop knows when it starts."""
    config: dict[str, Any]          # RunConfig.to_dict()
    total_steps: int
    device: str
    precision: str
    n_params: int
    n_trainable: int
    versions: dict[str, str] = field(default_factory=dict)
    world_size: int = 1             # torchrun processes training this run (1 = a single process)


@dataclass
class EvalReport:
    """One evaluation pass (periodic or final) of the student (and teacher when one exists)."""
    step: int
    # dataset -> metric -> value; metric names: "accuracy", "ece", "ece_batch", "nll", "brier", "mce",
    # and "teacher_accuracy" etc. for the teacher's numbers.
    metrics: dict[str, dict[str, float]] = field(default_factory=dict)
    # dataset -> list of bins {"model", "bin", "lo", "hi", "count", "mean_confidence", "accuracy"}
    reliability: dict[str, list[dict[str, float]]] = field(default_factory=dict)
    # rows {"tower", "layer", "layer_index", "pair", "kind", "value"}; pair e.g. "student_vs_pretrained"
    similarities: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class RunSummary:
    status: str                      # done | failed | cancelled
    steps: int                       # steps completed
    wall_time_s: float
    steps_per_s: float
    final_eval: dict[str, dict[str, float]] = field(default_factory=dict)
    # series name/context -> {"last_value", "auc_normalized", "early_slope", "half_life_step"}
    summaries: dict[str, dict[str, float | None]] = field(default_factory=dict)
    error: str = ""
    checkpoint: str = ""
    # global batch x steps / their time, steps >= 2 (data waits included); the per-step series is "images_per_s"
    images_per_s: float = float("nan")
    # distinct train images that could not be decoded and were replaced (series "skipped_images"/"train")
    skipped_images: int = 0


class Hooks:
    """No-op base; subclass and override what you need."""

    def on_start(self, info: RunInfo) -> None: ...
    def on_step(self, step: int, scalars: Mapping[ScalarKey, float]) -> None: ...
    def on_eval(self, report: EvalReport) -> None: ...
    def on_checkpoint(self, step: int, path: str) -> None: ...
    def on_end(self, summary: RunSummary) -> None: ...

    def should_stop(self) -> bool:
        """Polled once per step; True ends the run as 'cancelled' after the current step."""
        return False


class HookList(Hooks):
    def __init__(self, hooks: Sequence[Hooks] = ()):
        self.hooks = [h for h in hooks if h is not None]

    def on_start(self, info):
        for h in self.hooks:
            h.on_start(info)

    def on_step(self, step, scalars):
        for h in self.hooks:
            h.on_step(step, scalars)

    def on_eval(self, report):
        for h in self.hooks:
            h.on_eval(report)

    def on_checkpoint(self, step, path):
        for h in self.hooks:
            h.on_checkpoint(step, path)

    def on_end(self, summary):
        for h in self.hooks:
            h.on_end(summary)

    def should_stop(self):
        return any(h.should_stop() for h in self.hooks)
