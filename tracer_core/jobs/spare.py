"""The runner's side of a warm worker: one idle ``python -m tracer_core.jobs.worker --warm`` process.

Why: a cold worker spends most of the wait before a run's first point importing torch/open_clip and building
the model and datasets (4.5-5 s of the 5.2-5.8 s to the demo's first point on the 2-core box at load ~2.7;
11-16 s were seen under heavier load); a spare has done the run-independent part before the click, so the
demo's first point comes ~1.6 s after the submit (``bench/bench_first_points.py``). The protocol is three
file descriptors:

* stdin  (pipe): the runner writes one run folder path and closes it; closing it without a path (shutdown,
  or the runner's death) makes the spare exit at once;
* stdout (pipe): the spare writes ``ready`` when its warm-up is done (only :meth:`WarmSpare.ready` reads it);
* stderr (an unnamed temporary file): the warm-up's output; the spare copies it into the run's worker.log
  at the hand-over, and the runner reads its tail if the spare dies idle.

No torch here (the runner stays light): only subprocess plumbing.
"""
from __future__ import annotations

import os
import select
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Mapping, Sequence

from .worker import READY


class WarmSpare:
    def __init__(self, cmd: Sequence[str], *, cwd: str | os.PathLike, env: Mapping[str, str]):
        self._log = tempfile.TemporaryFile()
        # own session, like a cold worker: a Ctrl-C in the dashboard's terminal does not reach it
        self.proc = subprocess.Popen(list(cmd), cwd=cwd, env=dict(env), stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=self._log, start_new_session=True)
        self.started = time.monotonic()
        self._ready = False

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def ready(self, timeout: float = 0.0) -> bool:
        """True once the spare said its warm-up is done (waits up to ``timeout`` seconds for that)."""
        try:
            if not self._ready and self.proc.stdout is not None and not self.proc.stdout.closed:
                readable, _, _ = select.select([self.proc.stdout], [], [], max(0.0, timeout))
                if readable:
                    self._ready = self.proc.stdout.readline() == READY   # b"" (EOF): it died
        except (OSError, ValueError):     # handed over (pipe closed) by the supervisor meanwhile
            return False
        return self._ready and self.alive()

    def hand_over(self, run_dir: Path) -> subprocess.Popen | None:
        """Give the spare its run; returns its process, or None if it is gone (then start a cold worker)."""
        if not self.alive():
            return None
        try:
            self.proc.stdin.write(os.fsencode(run_dir) + b"\n")
            self.proc.stdin.close()
        except OSError:                  # it died between the check and the write
            self.stop()
            return None
        self._close_pipes()
        return self.proc

    def stop(self, grace_s: float = 2.0) -> None:
        """Make an idle spare exit (end of stdin, then SIGKILL) and reap it: no process is left behind."""
        try:
            if self.proc.stdin and not self.proc.stdin.closed:
                self.proc.stdin.close()
        except OSError:
            pass
        try:
            self.proc.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._close_pipes()

    def log_tail(self, n: int = 5) -> str:
        try:
            self._log.seek(0)
            lines = self._log.read().decode(errors="replace").strip().splitlines()
        except (OSError, ValueError):
            return ""
        return " | ".join(lines[-n:])

    def _close_pipes(self) -> None:
        for f in (self.proc.stdout, self._log):
            try:
                f.close()
            except (OSError, AttributeError):
                pass
