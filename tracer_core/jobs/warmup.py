"""What a spare worker does before it has a run: the slow part of a start-up that does not depend on the run.

Measured on the 2-core box (before any run is known): importing torch + open_clip + the training code takes
3-7 s; the first build of each digit dataset pays one-off costs (MNIST's CSV, the glyph masks of the world
fonts, torchvision's transform modules: ~0.5 s together, more under load); a second build of the same set
with other sizes or seeds costs milliseconds because those raw pieces are cached per process
(``functools.lru_cache`` in ``data/digits.py``, ``data/glyphs.py``, ``data/world.py``).

So the warm-up builds every digit set once with a handful of samples at the built-in models' image sizes,
rather than guessing the next run's exact sets: whatever the run asks for then costs ~0.2 s to build, and
the run's own data are built exactly as on a cold start (same code, same seeds: identical results).

Every step is best-effort: a failure here is printed (it lands in the run's worker.log) and the run itself
then fails or succeeds exactly as a cold start would. ``stop`` is set when a run arrives: the dataset part
stops early then, since the run builds what it needs itself.
"""
from __future__ import annotations

import importlib
import threading
import traceback

WARM_MODULES = ("torch", "open_clip", "tracer_core.training.loop", "tracer_core.data.registry")
WARM_SAMPLES = 8                 # per set: enough to touch every code path, cheap enough to ignore
WARM_KINDS = ("id", "ood", "pretrain", "synthetic")   # the registry's in-memory sets (not user files)


def warm_up(entry: str, threads: int, stop: threading.Event) -> None:
    """Import what a run needs and touch the dataset code paths; never raises."""
    _try(_set_threads, threads)       # first: the warm-up itself must not take more cores than the run will
    for module in (*WARM_MODULES, entry.partition(":")[0]):
        _try(importlib.import_module, module)
    if not stop.is_set():
        _try(_warm_datasets, stop)


def _try(fn, *args) -> None:
    try:
        fn(*args)
    except Exception:
        print(f"warm-up: {getattr(fn, '__name__', fn)}{args!r} failed (the run will retry it):", flush=True)
        traceback.print_exc()


def _set_threads(n: int) -> None:
    import torch
    torch.set_num_threads(n)


def image_sizes() -> list[int]:
    """Input sizes of the built-in model configs (the glyph masks are cached per size)."""
    import open_clip
    from tracer_core.models.clip import BUILTIN
    sizes = set()
    for name in BUILTIN:
        size = (open_clip.get_model_config(name) or {}).get("vision_cfg", {}).get("image_size", 28)
        sizes.add(int(size[0] if isinstance(size, (list, tuple)) else size))
    return sorted(sizes) or [28]


def _warm_datasets(stop: threading.Event) -> None:
    from tracer_core.data import registry
    names = [n for n in registry.list_datasets() if registry.dataset_info(n)["kind"] in WARM_KINDS]
    # each corruption kind once: their torchvision transforms import and initialise lazily
    names += [f"corrupted_mnist:{kind}" for kind in registry.CORRUPTIONS]
    for size in image_sizes():
        for name in names:
            if stop.is_set():
                return
            _try(registry.load_dataset, name, "test", size, 0, WARM_SAMPLES)
