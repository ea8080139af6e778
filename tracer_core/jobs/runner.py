"""JobRunner: queue training runs and supervise them as subprocesses (one runner per dashboard process).

Why supervised subprocesses (``python -m tracer_core.jobs.worker <run_dir>``) rather than threads:

* **crash isolation**: a segfault, OOM kill or runaway run takes down its worker, never the dashboard;
* **no GIL fight**: the UI stays responsive while torch's Python-side work runs elsewhere (the worker gets
  ``cores - 1`` threads);
* **one code path**: the worker runs ``tracer_core.training.run`` with a ``RunWriter``, exactly like the
  CLI's ``train`` command, and writes only its run folder, so it never contends for the DuckDB file;
* **hard stop possible**: a thread cannot be killed; a process can (SIGTERM, then SIGKILL).

State lives on disk (status.json in each run folder), so a restarted dashboard rebuilds its view from the
folders: runs whose process is gone are recorded as ``interrupted`` (:meth:`JobRunner.recover`), with their
data up to the last flush intact; live runs (CLI runs, another dashboard's) are left alone.

Idempotency: ``submit(config, client_token=...)`` within ``idempotency_window_s`` (10 s) of an identical
submission returns the first run's id instead of starting a second run. The key is
``sha256(canonical config JSON + "\\n" + client_token)``; pass the browser session id as the token so a
double click or a rerun is one run while two users may still start the same config.

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

No torch, no streamlit, no duckdb here: the runner imports only the config and the run-folder writer.
"""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from tracer_core.store import schema
from tracer_core.store.runfiles import (HOST, RunFolderError, effective_status, list_run_dirs, read_json,
                                        run_dir_of, write_json_atomic)
from tracer_core.store.writer import create_run_folder

from .spare import WarmSpare

WORKER_MODULE = "tracer_core.jobs.worker"
WARM_ENV = "TRACER_WARM_WORKER"         # "0" turns warm starts off (for a JobRunner built without ``warm=``)
MAX_SPARE_FAILURES = 3                  # spares that die idle in a row before warm starts are switched off
SPARE_WAIT_FOR_FIRST_STEP_S = 60.0      # hold the next spare back at most this long for a run's first step


@dataclass(frozen=True)
class JobStatus:
    run_id: str
    status: str                  # queued | running | done | failed | cancelled | interrupted
    step: int                    # last step index reported (the loop counts from 0)
    steps_done: int
    total: int
    progress: float              # steps_done / total in [0, 1]
    eta_s: float | None          # seconds left at the current rate (running only)
    error: str
    pid: int | None
    queue_position: int | None   # 0 = next to start (queued only)


def idempotency_key(config: Any, client_token: str = "") -> str:
    cfg = config.to_dict() if hasattr(config, "to_dict") else dict(config)
    text = json.dumps(cfg, sort_keys=True, separators=(",", ":")) + "\n" + client_token
    return hashlib.sha256(text.encode()).hexdigest()[:16]


class JobRunner:
    def __init__(self, data_dir: str | os.PathLike | None = None, *, max_concurrent: int = 1,
                 idempotency_window_s: float = 10.0, cancel_grace_s: float = 30.0, kill_grace_s: float = 10.0,
                 poll_s: float = 0.25, worker_threads: int | None = None, entry: str | None = None,
                 env: Mapping[str, str] | None = None, python: str = sys.executable, warm: bool | None = None,
                 spare_while_running: bool = False):
        """``entry``: ``module:function`` the worker trains with (default ``tracer_core.training:run``).
        ``env``: extra environment for workers. ``warm``: keep a pre-warmed spare worker (None: on unless
        ``$TRACER_WARM_WORKER`` is "0"); ``spare_while_running``: see the module docstring. The other knobs
        are timeouts in seconds."""
        self.data_dir = schema.resolve_data_dir(data_dir)
        self.max_concurrent = max(1, max_concurrent)
        self.idempotency_window_s = idempotency_window_s
        self.cancel_grace_s, self.kill_grace_s, self.poll_s = cancel_grace_s, kill_grace_s, poll_s
        self.worker_threads = worker_threads
        self.entry, self.env, self.python = entry, dict(env or {}), python
        self._lock = threading.RLock()
        self._queue: deque[str] = deque()
        self._procs: dict[str, subprocess.Popen] = {}
        self._cancel_at: dict[str, float] = {}
        self._recent: dict[str, tuple[str, float]] = {}
        self._started: dict[str, float] = {}       # run id -> monotonic start, to time the next spare
        self.warm = os.environ.get(WARM_ENV, "1").strip() != "0" if warm is None else bool(warm)
        self._spare: WarmSpare | None = None
        self.spare_while_running = spare_while_running
        self._spare_failures = 0
        self._handed: set[str] = set()            # runs given to a spare, until it is reaped
        self._cold_retry: set[str] = set()        # runs whose spare died before taking them: start cold
        self._closing = False
        self._wake, self._stopping = threading.Event(), threading.Event()
        self.recovered = self.recover()
        self._thread = threading.Thread(target=self._supervise, name="job-runner", daemon=True)
        self._thread.start()

    # -- public API -----------------------------------------------------------------------------------
    def submit(self, config: Any, *, client_token: str = "") -> str:
        """Queue a run of ``config`` (a RunConfig); returns its run id (see the idempotency note above)."""
        key = idempotency_key(config, client_token)
        with self._lock:
            now = time.time()
            self._recent = {k: v for k, v in self._recent.items() if now - v[1] < self.idempotency_window_s}
            if key in self._recent and self.status(self._recent[key][0]).status in schema.ACTIVE_STATUSES:
                return self._recent[key][0]     # a double click; after a cancel, a new submit is a new run
            run_dir = create_run_folder(config, self.data_dir, status="queued",
                                        extra={"idempotency_key": key, "launched_by": "dashboard"})
            self._recent[key] = (run_dir.name, now)
            self._queue.append(run_dir.name)
        self._wake.set()
        return run_dir.name

    def cancel(self, run_id: str) -> bool:
        """Stop a run: a queued one at once, a running one after its current step (then SIGTERM, SIGKILL).

        Works for runs this runner did not start too (CLI runs): their writer polls the same cancel file.
        Returns False when the run is not live.
        """
        run_dir = run_dir_of(run_id, self.data_dir)
        with self._lock:
            if run_id in self._queue:
                self._queue.remove(run_id)
                self._finish(run_dir, "cancelled", "cancelled before it started")
                return True
            status = _read_status(run_dir)
            if run_id not in self._procs and effective_status(status)[0] not in schema.ACTIVE_STATUSES:
                return False
            (run_dir / schema.CANCEL_FILE).touch()
            if run_id in self._procs:    # ours: escalate to SIGTERM/SIGKILL if it does not stop
                self._cancel_at.setdefault(run_id, time.monotonic())
        self._wake.set()
        return True

    def status(self, run_id: str) -> JobStatus:
        st = _read_status(run_dir_of(run_id, self.data_dir))
        state, reason = effective_status(st)
        done, total = int(st.get("steps_done") or 0), int(st.get("total") or 0)
        rate = st.get("steps_per_s") or 0
        with self._lock:
            pos = list(self._queue).index(run_id) if run_id in self._queue else None
        return JobStatus(run_id=run_id, status=state or "unknown", step=int(st.get("step") or 0),
                         steps_done=done, total=total, progress=min(1.0, done / total) if total else 0.0,
                         eta_s=(total - done) / rate if state == "running" and rate > 0 else None,
                         error=st.get("error") or reason, pid=st.get("pid"), queue_position=pos)

    def jobs(self) -> list[JobStatus]:
        """Runs of this runner plus any other live run in the data folder, newest first."""
        with self._lock:
            mine = set(self._queue) | set(self._procs) | {v[0] for v in self._recent.values()}
        live = {p.name for p in list_run_dirs(self.data_dir)
                if effective_status(_read_status(p))[0] in schema.ACTIVE_STATUSES}
        return [self.status(r) for r in sorted(mine | live, reverse=True)]

    def wait(self, run_id: str, timeout: float | None = None, poll_s: float = 0.1) -> JobStatus:
        """Block until the run reaches a final status (or ``timeout``); returns the last status seen."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            st = self.status(run_id)
            with self._lock:
                busy = run_id in self._queue or run_id in self._procs
            if st.status in schema.FINAL_STATUSES and not busy:
                return st
            if deadline is not None and time.monotonic() > deadline:
                return st
            time.sleep(poll_s)

    def recover(self) -> list[str]:
        """Record ``interrupted`` for queued/running runs whose process is gone; returns their ids."""
        done = []
        for path in list_run_dirs(self.data_dir):
            st = _read_status(path)
            if st.get("status") not in schema.ACTIVE_STATUSES:
                continue
            with self._lock:
                if path.name in self._queue or path.name in self._procs:
                    continue
            state, reason = effective_status(st)
            if state == "interrupted" and st.get("host") == HOST:
                self._finish(path, "interrupted", reason)
                done.append(path.name)
        return done

    @property
    def warm_pid(self) -> int | None:
        """Process id of the idle spare worker, or None (warm starts off, or none alive right now)."""
        with self._lock:
            spare = self._spare
        return spare.pid if spare is not None and spare.alive() else None

    def wait_warm(self, timeout: float = 120.0) -> bool:
        """Block until a spare worker has finished its warm-up (benchmarks, tests); False if none did."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                spare = self._spare
            if spare is not None and spare.ready(timeout=min(0.2, max(0.0, deadline - time.monotonic()))):
                return True
            if not self.warm:
                return False
            time.sleep(0.05)
        return False

    def shutdown(self, *, cancel_running: bool = False, timeout: float = 30.0) -> None:
        """Stop supervising (queued runs are cancelled, the idle spare worker exits); optionally cancel
        running ones and wait for them."""
        with self._lock:
            self._closing = True            # no new spare from here on
            spare, self._spare = self._spare, None
            queued = list(self._queue)
        if spare is not None:
            spare.stop()
        for run_id in queued:
            self.cancel(run_id)
        if cancel_running:
            for run_id in list(self._procs):
                self.cancel(run_id)
            deadline = time.monotonic() + timeout
            while self._procs and time.monotonic() < deadline:
                time.sleep(0.05)
        self._stopping.set()
        self._wake.set()
        self._thread.join(timeout=5)

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
        st = _read_status(run_dir_of(run_id, self.data_dir))
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
        st = _read_status(run_dir)
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
        st = _read_status(run_dir)
        st.update(status=status, error=error, ended=time.time())
        write_json_atomic(run_dir / schema.STATUS_FILE, st)


def _read_status(run_dir: Path) -> dict[str, Any]:
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
