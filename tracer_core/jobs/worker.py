"""One training run in its own process: ``python -m tracer_core.jobs.worker <run_dir> [options]``.

The run folder must already exist with its config.json (``JobRunner.submit`` or
``tracer_core.store.writer.create_run_folder`` make it). The worker attaches a
:class:`~tracer_core.store.writer.RunWriter` *before* importing torch, so the run shows as running (with a
heartbeat) while the heavy imports happen, then calls ``tracer_core.training.run(config, writer,
output_dir=<run_dir>)`` (checkpoints go to ``<run_dir>/checkpoints/``), the same entry point the CLI's ``train`` command uses.

Stopping: a ``cancel`` file in the run folder (written by ``JobRunner.cancel``) is polled once per step by
the writer's ``should_stop``; SIGTERM asks for the same graceful stop; SIGKILL is the runner's last resort
(rows flushed until then stay readable). With ``--parent-pid`` the run stops as "interrupted" when the
dashboard that launched it dies.
"""
from __future__ import annotations

import argparse
import importlib
import os
import signal
import sys
import traceback
from pathlib import Path
from typing import Sequence

from tracer_core.config import RunConfig
from tracer_core.store import schema
from tracer_core.store.runfiles import read_json
from tracer_core.store.writer import RunWriter

DEFAULT_ENTRY = "tracer_core.training:run"


def default_threads() -> int:
    """Leave one core to the dashboard (2 cores here: the worker gets 1)."""
    return max(1, (os.cpu_count() or 2) - 1)


def _load_entry(spec: str):
    module, _, attr = spec.partition(":")
    return getattr(importlib.import_module(module), attr or "run")


def _set_threads(n: int) -> None:
    try:
        import torch
    except ImportError:   # a stand-in entry (tests) may not need torch
        return
    torch.set_num_threads(n)


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m tracer_core.jobs.worker", description=__doc__.split("\n")[0])
    p.add_argument("run_dir", type=Path)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: train.threads, else cores - 1)")
    p.add_argument("--parent-pid", type=int, default=None, help="stop as interrupted when this parent dies")
    p.add_argument("--entry", default=DEFAULT_ENTRY, help="module:function with training.run's signature")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse(argv)
    writer = RunWriter(args.run_dir, parent_pid=args.parent_pid)

    def on_sigterm(signum, frame):     # graceful: the loop stops after the current step
        cancelled = (args.run_dir / schema.CANCEL_FILE).exists()
        writer.stop_from_signal("cancelled" if cancelled else "interrupted")

    signal.signal(signal.SIGTERM, on_sigterm)
    try:
        doc = read_json(args.run_dir / schema.CONFIG_FILE) or {}
        config = RunConfig.from_dict(doc.get("config", {}))
        train = _load_entry(args.entry)
        _set_threads(args.threads or config.train.threads or default_threads())
        train(config, writer, output_dir=args.run_dir)
    except KeyboardInterrupt:
        writer.close("interrupted", "KeyboardInterrupt")
        return 130
    except BaseException as e:   # the loop has usually reported already; close() is then a no-op
        traceback.print_exc()
        writer.close("failed", f"{type(e).__name__}: {e}")
        return 1
    writer.close(writer.stop_reason or "done")   # no-op when the loop called on_end (the normal case)
    return 0


if __name__ == "__main__":
    sys.exit(main())
