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

WORKER_MODULE = "tracer_core.jobs.worker"


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
                 env: Mapping[str, str] | None = None, python: str = sys.executable):
        """``entry``: ``module:function`` the worker trains with (default ``tracer_core.training:run``).
        ``env``: extra environment for workers. The other knobs are timeouts in seconds."""
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

    def shutdown(self, *, cancel_running: bool = False, timeout: float = 30.0) -> None:
        """Stop supervising (queued runs are cancelled); optionally cancel running ones and wait for them."""
        with self._lock:
            queued = list(self._queue)
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

    def _worker_env(self, threads: int) -> dict[str, str]:
        env = {**os.environ, **self.env, "TRACER_DATA_DIR": str(self.data_dir), "OMP_NUM_THREADS": str(threads)}
        paths = [str(schema.REPO_ROOT)] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
        env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
        return env

    def _start(self, run_id: str) -> None:
        run_dir = run_dir_of(run_id, self.data_dir)
        cpus = max(1, (os.cpu_count() or 2) - 1)
        threads = self.worker_threads or max(1, cpus // self.max_concurrent)
        cmd = [self.python, "-m", WORKER_MODULE, str(run_dir), "--threads", str(threads),
               "--parent-pid", str(os.getpid())] + (["--entry", self.entry] if self.entry else [])
        try:
            with open(run_dir / schema.WORKER_LOG, "ab") as log:
                # own session: a Ctrl-C in the dashboard's terminal does not reach the worker; the worker
                # notices the dashboard's death itself (--parent-pid) and stops as interrupted
                self._procs[run_id] = subprocess.Popen(cmd, cwd=schema.REPO_ROOT, env=self._worker_env(threads),
                                                       stdin=subprocess.DEVNULL, stdout=log,
                                                       stderr=subprocess.STDOUT, start_new_session=True)
        except OSError as e:
            self._finish(run_dir, "failed", f"could not start the worker: {e}")

    def _reap(self, run_id: str, rc: int) -> None:
        """The worker exited: if it could not record an end status itself, record one for it."""
        run_dir = run_dir_of(run_id, self.data_dir)
        cancelled = self._cancel_at.pop(run_id, None) is not None
        st = _read_status(run_dir)
        if st.get("status") not in schema.ACTIVE_STATUSES:
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
