"""JobRunner: queue training runs and supervise them as subprocesses (one runner per dashboard process).

This module is the queue and the public API (submit, cancel, status, wait, recover, shutdown);
:mod:`tracer_core.jobs.supervisor` is the supervision thread's side: it starts, polls, stops and reaps the
worker processes and keeps the warm spare worker (why subprocesses, and when a spare warms up: there).

State lives on disk (status.json in each run folder), so a restarted dashboard rebuilds its view from the
folders: runs whose process is gone are recorded as ``interrupted`` (:meth:`JobRunner.recover`), with their
data up to the last flush intact; live runs (CLI runs, another dashboard's) are left alone.

Idempotency: ``submit(config, client_token=...)`` within ``idempotency_window_s`` (10 s) of an identical
submission returns the first run's id instead of starting a second run. The key is
``sha256(canonical config JSON + "\\n" + client_token)``; pass the browser session id as the token so a
double click or a rerun is one run while two users may still start the same config.

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
from typing import Any, Mapping

from tracer_core.store import schema
from tracer_core.store.runfiles import HOST, effective_status, list_run_dirs, run_dir_of
from tracer_core.store.writer import create_run_folder

from .spare import WarmSpare
from .supervisor import WorkerSupervisor, read_status

WARM_ENV = "TRACER_WARM_WORKER"         # "0" turns warm starts off (for a JobRunner built without ``warm=``)


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


class JobRunner(WorkerSupervisor):
    def __init__(self, data_dir: str | os.PathLike | None = None, *, max_concurrent: int = 1,
                 idempotency_window_s: float = 10.0, cancel_grace_s: float = 30.0, kill_grace_s: float = 10.0,
                 poll_s: float = 0.25, worker_threads: int | None = None, entry: str | None = None,
                 env: Mapping[str, str] | None = None, python: str = sys.executable, warm: bool | None = None,
                 spare_while_running: bool = False):
        """``entry``: ``module:function`` the worker trains with (default ``tracer_core.training:run``).
        ``env``: extra environment for workers. ``warm``: keep a pre-warmed spare worker (None: on unless
        ``$TRACER_WARM_WORKER`` is "0"); ``spare_while_running``: see :mod:`tracer_core.jobs.supervisor`. The
        other knobs are timeouts in seconds."""
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
            status = read_status(run_dir)
            if run_id not in self._procs and effective_status(status)[0] not in schema.ACTIVE_STATUSES:
                return False
            (run_dir / schema.CANCEL_FILE).touch()
            if run_id in self._procs:    # ours: escalate to SIGTERM/SIGKILL if it does not stop
                self._cancel_at.setdefault(run_id, time.monotonic())
        self._wake.set()
        return True

    def status(self, run_id: str) -> JobStatus:
        st = read_status(run_dir_of(run_id, self.data_dir))
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
                if effective_status(read_status(p))[0] in schema.ACTIVE_STATUSES}
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
            st = read_status(path)
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
