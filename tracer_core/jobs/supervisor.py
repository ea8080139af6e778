"""The job runner's process management: the supervision thread starts queued runs in worker subprocesses,
polls them, escalates a cancel to SIGTERM/SIGKILL, reaps them, and keeps one pre-warmed spare worker.

Why supervised subprocesses (``python -m tracer_core.jobs.worker <run_dir>``) rather than threads:

* **crash isolation**: a segfault, OOM kill or runaway run takes down its worker, never the dashboard;
* **no GIL fight**: the UI stays responsive while torch's Python-side work runs elsewhere (the worker gets
  ``cores - 1`` threads);
* **one code path**: the worker runs ``tracer_core.training.run`` with a ``RunWriter``, exactly like the
  CLI's ``train`` command, and writes only its run folder, so it never contends for the DuckDB file;
* **hard stop possible**: a thread cannot be killed; a process can (SIGTERM, then SIGKILL).

Warm start (default on; ``warm=False`` or ``$TRACER_WARM_WORKER=0`` turns it off): the runner keeps one idle
*spare* worker that has already imported torch/open_clip/the training code and touched the dataset code
(:mod:`tracer_core.jobs.warmup`); the next run to start is handed to it (:mod:`tracer_core.jobs.spare`) and a
new spare is started for the one after. From then on it is an ordinary worker: same command-line options,
environment, thread count, cancel file, SIGTERM/SIGKILL escalation, reaping, parent-death rule and
worker.log. If the spare is gone, the run gets a cold worker; so does a run whose spare died after the
hand-over but before it took the run (status.json still "queued": a spare killed just then can still look
alive for a moment). After 3 spares in a row die before running anything, warm starts are switched off for
this runner (the reason is printed).

When the spare warms up: a warm-up is 4-7 s of one busy core. Workers get ``cores - 1`` threads so that the
dashboard keeps a core; a spare warming up beside a run would take that core for those seconds, just while
the user watches the run's first live points. So by default a new spare starts only while no run is
running: the first run after an idle spell (the demo click, a Launch) starts warm, and runs queued behind a
running one start cold, as before. ``spare_while_running=True`` starts the next spare as soon as every
running run has reported its first step instead (queued runs then start warm too).
"""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from tracer_core.store import schema
from tracer_core.store.runfiles import RunFolderError, read_json, run_dir_of, write_json_atomic

from .spare import WarmSpare

WORKER_MODULE = "tracer_core.jobs.worker"
MAX_SPARE_FAILURES = 3                  # spares that die idle in a row before warm starts are switched off
SPARE_WAIT_FOR_FIRST_STEP_S = 60.0      # hold the next spare back at most this long for a run's first step


class WorkerSupervisor:
    """The supervision half of :class:`~tracer_core.jobs.runner.JobRunner` (its base class, not used alone):
    the state it works on (queue, worker processes, spare, lock, timeouts) is set up by ``JobRunner.__init__``."""

    # -- supervision ----------------------------------------------------------------------------------
    def _supervise(self) -> None:
        # the only thread that starts workers: it lives as long as the runner, so children never outlive
        # the thread that spawned them by accident
        while True:
            self._wake.wait(self.poll_s)
            self._wake.clear()
            try:
                self._tick()
            except Exception as e:  # keep supervising whatever happens to one run
                print(f"job-runner: {type(e).__name__}: {e}", file=sys.stderr)
            if self._stopping.is_set() and not self._procs:
                return
            if self._stopping.is_set():
                time.sleep(self.poll_s)

    def _tick(self) -> None:
        with self._lock:
            for run_id, proc in list(self._procs.items()):
                rc = proc.poll()
                if rc is not None:
                    del self._procs[run_id]
                    self._reap(run_id, rc)
                elif run_id in self._cancel_at:
                    waited = time.monotonic() - self._cancel_at[run_id]
                    if waited > self.cancel_grace_s + self.kill_grace_s:
                        proc.kill()
                    elif waited > self.cancel_grace_s:
                        proc.terminate()
            while self._queue and len(self._procs) < self.max_concurrent and not self._stopping.is_set():
                self._start(self._queue.popleft())
            self._keep_spare()

    def _worker_env(self, threads: int) -> dict[str, str]:
        env = {**os.environ, **self.env, "TRACER_DATA_DIR": str(self.data_dir), "OMP_NUM_THREADS": str(threads)}
        paths = [str(schema.REPO_ROOT)] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
        env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
        return env

    def _threads(self) -> int:
        cpus = max(1, (os.cpu_count() or 2) - 1)
        return self.worker_threads or max(1, cpus // self.max_concurrent)

    def _worker_cmd(self, first: list[str], threads: int) -> list[str]:
        return ([self.python, "-m", WORKER_MODULE, *first, "--threads", str(threads), "--parent-pid",
                 str(os.getpid())] + (["--entry", self.entry] if self.entry else []))

    def _start(self, run_id: str) -> None:
        run_dir = run_dir_of(run_id, self.data_dir)
        self._started[run_id] = time.monotonic()
        if self._spare is not None and run_id not in self._cold_retry:
            spare, self._spare = self._spare, None
            proc = spare.hand_over(run_dir)
            if proc is not None:
                self._procs[run_id] = proc
                self._handed.add(run_id)
                return
            self._spare_died(spare)          # gone before we could use it: a cold start instead
        self._cold_retry.discard(run_id)
        threads = self._threads()
        cmd = self._worker_cmd([str(run_dir)], threads)
        try:
            with open(run_dir / schema.WORKER_LOG, "ab") as log:
                # own session: a Ctrl-C in the dashboard's terminal does not reach the worker; the worker
                # notices the dashboard's death itself (--parent-pid) and stops as interrupted
                self._procs[run_id] = subprocess.Popen(cmd, cwd=schema.REPO_ROOT, env=self._worker_env(threads),
                                                       stdin=subprocess.DEVNULL, stdout=log,
                                                       stderr=subprocess.STDOUT, start_new_session=True)
        except OSError as e:
            self._started.pop(run_id, None)
            self._finish(run_dir, "failed", f"could not start the worker: {e}")

    # -- the spare worker (see the module docstring) ---------------------------------------------------
    def _keep_spare(self) -> None:
        """Called under the lock each tick: notice a spare that died idle; start one when it is time."""
        if self._spare is not None and not self._spare.alive():
            spare, self._spare = self._spare, None
            self._spare_died(spare)
        if self._spare is not None or not self.warm or self._closing or self._stopping.is_set():
            return
        if self._procs and not self.spare_while_running:
            return       # its warm-up would take the dashboard's core while a run trains
        if any(not self._past_first_step(run_id) for run_id in self._procs):
            return       # ... and, even when allowed, never slow a run's way to its first points
        threads = self._threads()
        try:
            self._spare = WarmSpare(self._worker_cmd(["--warm"], threads), cwd=schema.REPO_ROOT,
                                    env=self._worker_env(threads))
        except OSError as e:
            self._give_up_warm(f"could not start a spare worker: {e}")

    def _past_first_step(self, run_id: str) -> bool:
        if time.monotonic() - self._started.get(run_id, 0.0) > SPARE_WAIT_FOR_FIRST_STEP_S:
            return True
        st = read_status(run_dir_of(run_id, self.data_dir))
        return int(st.get("steps_done") or 0) > 0 or st.get("status") not in schema.ACTIVE_STATUSES

    def _spare_died(self, spare: WarmSpare) -> None:
        tail = spare.log_tail()
        spare.stop()             # reap it (it is already gone: no wait)
        self._count_spare_failure(f"spare worker {spare.pid} exited with code {spare.proc.returncode}: {tail}")

    def _count_spare_failure(self, why: str) -> None:
        self._spare_failures += 1
        if self._spare_failures >= MAX_SPARE_FAILURES:
            self._give_up_warm(why)
        else:
            print(f"job-runner: {why}", file=sys.stderr)

    def _give_up_warm(self, why: str) -> None:
        self.warm = False
        print(f"job-runner: warm starts switched off ({why}); runs start cold", file=sys.stderr)

    def _reap(self, run_id: str, rc: int) -> None:
        """The worker exited: if it could not record an end status itself, record one for it."""
        run_dir = run_dir_of(run_id, self.data_dir)
        self._started.pop(run_id, None)
        cancelled = self._cancel_at.pop(run_id, None) is not None
        handed = run_id in self._handed
        self._handed.discard(run_id)
        st = read_status(run_dir)
        if st.get("status") not in schema.ACTIVE_STATUSES:
            if handed:
                self._spare_failures = 0     # a spare ran a run: warm starts work
            return
        if handed and not cancelled and st.get("status") == "queued" and not self._stopping.is_set():
            # the spare died before attaching its writer: the run never began, so start it cold
            self._count_spare_failure(f"spare worker exited with code {rc} before taking run {run_id}")
            self._cold_retry.add(run_id)
            self._queue.appendleft(run_id)
            return
        if cancelled:
            self._finish(run_dir, "cancelled", "stopped by the job runner")
        elif rc < 0:
            self._finish(run_dir, "interrupted", f"worker killed by signal {-rc}")
        else:
            self._finish(run_dir, "failed", f"worker exited with code {rc}: {_tail(run_dir / schema.WORKER_LOG)}")

    def _finish(self, run_dir: Path, status: str, error: str) -> None:
        st = read_status(run_dir)
        st.update(status=status, error=error, ended=time.time())
        write_json_atomic(run_dir / schema.STATUS_FILE, st)


def read_status(run_dir: Path) -> dict[str, Any]:
    """status.json as a dict; {} when missing or unreadable (the store reports unreadable folders)."""
    try:
        return read_json(run_dir / schema.STATUS_FILE) or {}
    except (RunFolderError, OSError):
        return {}


def _tail(path: Path, n: int = 5) -> str:
    try:
        lines = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return ""
    return " | ".join(lines[-n:])
