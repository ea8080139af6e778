"""One training run in its own process: ``python -m tracer_core.jobs.worker <run_dir> [options]``.

The run folder must already exist with its config.json (``JobRunner.submit`` or
``tracer_core.store.writer.create_run_folder`` make it). The worker attaches a
:class:`~tracer_core.store.writer.RunWriter` *before* importing torch, so the run shows as running (with a
heartbeat) while the heavy imports happen, then calls ``tracer_core.training.run(config, writer,
output_dir=<run_dir>)`` (checkpoints go to ``<run_dir>/checkpoints/``), the same entry point the CLI's ``train`` command uses.

Warm mode (``--warm``, no run dir): the job runner keeps one such *spare* worker idle. It does the slow part
of a start-up ahead of time (torch, open_clip, the training code, the dataset code paths: see
:mod:`tracer_core.jobs.warmup`), says ``ready`` on stdout, then reads one run folder path from stdin and runs
it exactly as the cold path would (same writer, same entry, same thread count). Until the path arrives its
output goes to the file the runner gave it as stderr; that text is copied to the run's ``worker.log``, which
then receives everything else. End of stdin before a path (the runner shut down or died): exit at once.

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
import threading
import time
import traceback
from pathlib import Path
from typing import Sequence

from tracer_core.config import RunConfig
from tracer_core.store import schema
from tracer_core.store.runfiles import read_json
from tracer_core.store.writer import RunWriter

DEFAULT_ENTRY = "tracer_core.training:run"
READY = b"ready\n"


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
    p.add_argument("run_dir", type=Path, nargs="?", help="the run folder (omit with --warm)")
    p.add_argument("--warm", action="store_true", help="warm up, then read the run folder from stdin")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: train.threads, else cores - 1)")
    p.add_argument("--parent-pid", type=int, default=None, help="stop as interrupted when this parent dies")
    p.add_argument("--entry", default=DEFAULT_ENTRY, help="module:function with training.run's signature")
    args = p.parse_args(argv)
    if (args.run_dir is None) != args.warm:
        p.error("give a run folder, or --warm without one")
    return args


class _Job:
    """The run this process serves; filled at once (cold) or when the runner hands one over (warm)."""

    def __init__(self) -> None:
        self.run_dir: Path | None = None
        self.writer: RunWriter | None = None
        self.error: BaseException | None = None
        self.arrived = threading.Event()

    def attach(self, run_dir: Path, parent_pid: int | None) -> None:
        try:
            self.writer = RunWriter(run_dir, parent_pid=parent_pid)
        except BaseException as e:     # reported by the main thread, as the cold path would fail
            self.error = e
        self.run_dir = run_dir
        self.arrived.set()


def _install_sigterm(job: _Job) -> None:
    def on_sigterm(signum, frame):     # graceful: the loop stops after the current step
        if job.writer is None:         # an idle spare (or a writer that failed): nothing to save
            os._exit(0 if job.run_dir is None else 143)
        cancelled = (job.run_dir / schema.CANCEL_FILE).exists()
        job.writer.stop_from_signal("cancelled" if cancelled else "interrupted")

    signal.signal(signal.SIGTERM, on_sigterm)


def _train(job: _Job, args: argparse.Namespace) -> int:
    """Run the attached job to its end; the same for cold and warm starts."""
    writer = job.writer
    try:
        if job.error is not None:
            raise job.error
        doc = read_json(job.run_dir / schema.CONFIG_FILE)
        if not isinstance(doc, dict) or not isinstance(doc.get("config"), dict):   # deleted or garbled folder:
            raise FileNotFoundError(f"{job.run_dir / schema.CONFIG_FILE}: missing or not a run config; "
                                    "not training with defaults")        # never train the default config
        config = RunConfig.from_dict(doc["config"])
        train = _load_entry(args.entry)
        _set_threads(args.threads or config.train.threads or default_threads())
        train(config, writer, output_dir=job.run_dir)
    except KeyboardInterrupt:
        if writer is not None:
            writer.close("interrupted", "KeyboardInterrupt")
        return 130
    except BaseException as e:   # the loop has usually reported already; close() is then a no-op
        traceback.print_exc()
        if writer is not None:
            writer.close("failed", f"{type(e).__name__}: {e}")
        return 1
    writer.close(writer.stop_reason or "done")   # no-op when the loop called on_end (the normal case)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse(argv)
    job = _Job()
    _install_sigterm(job)
    if args.warm:
        return _serve_warm(job, args)
    job.attach(args.run_dir, args.parent_pid)
    return _train(job, args)


# -- warm mode ----------------------------------------------------------------------------------------

def _move_output_to(log_path: Path) -> None:
    """Copy the warm-up output (our stderr file) into the run's worker.log, then write there from now on."""
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.lseek(2, 0, os.SEEK_SET)          # a regular file when the runner started us
        while chunk := os.read(2, 1 << 16):
            os.write(fd, chunk)
    except OSError:                          # a terminal or pipe (started by hand): nothing to copy
        pass
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)


def _receive(job: _Job, parent_pid: int | None) -> None:
    """Reader thread: wait for the run folder on stdin; attach the writer at once, even mid-warm-up, so
    the run shows as running (with a heartbeat) from the moment it is handed over."""
    line = sys.stdin.buffer.readline()
    if not line.strip():
        os._exit(0)    # stdin closed without a job: the runner shut down or died; nothing to clean up
    run_dir = Path(os.fsdecode(line.strip()))
    try:
        _move_output_to(run_dir / schema.WORKER_LOG)
    except OSError as e:
        print(f"worker: could not open {run_dir / schema.WORKER_LOG}: {e}", file=sys.stderr)
    job.attach(run_dir, parent_pid)


def _serve_warm(job: _Job, args: argparse.Namespace) -> int:
    from tracer_core.jobs import warmup   # here, not at the top: the cold path must not pay for it

    ready_fd = os.dup(1)     # stdout is the runner's "ready" pipe; prints go to the stderr file meanwhile
    os.dup2(2, 1)
    threading.Thread(target=_receive, args=(job, args.parent_pid), name="receive-run", daemon=True).start()
    t0 = time.perf_counter()
    warmup.warm_up(args.entry, args.threads or default_threads(), stop=job.arrived)
    try:
        if not job.arrived.is_set():
            os.write(ready_fd, READY)
    except OSError:           # the runner closed the pipe: it handed us a run meanwhile, or is gone
        pass
    os.close(ready_fd)
    warm_s = time.perf_counter() - t0
    while not job.arrived.wait(1.0):
        if args.parent_pid is not None and os.getppid() != args.parent_pid:
            return 0          # the runner died (stdin's EOF normally says so first)
    print(f"worker {os.getpid()}: warm start (warm-up {warm_s:.1f} s)", flush=True)
    return _train(job, args)


if __name__ == "__main__":
    sys.exit(main())
