"""RunWriter: the training hooks that write one append-only run folder (never DuckDB).

Folder ``<data_dir>/runs/<run_id>/`` (format :data:`~tracer_core.store.schema.RUN_FORMAT_VERSION`):

* ``config.json``  ``{"format_version", "run_id", "created", "config": RunConfig.to_dict(), ...}``; written once.
* ``status.json``  status, pid, host, heartbeat, step/total, rate, started/ended, error; replaced atomically on
  every heartbeat (:data:`~tracer_core.store.schema.HEARTBEAT_S`) and at the end.
* ``series.jsonl``, ``evaluations.jsonl``, ``reliability.jsonl``, ``similarities.jsonl``, ``artifacts.jsonl``:
  one JSON object per line, columns as in :data:`~tracer_core.store.schema.TABLES`. NaN/Infinity are written
  as the JSON extensions ``NaN``/``Infinity`` (Python's json and pyarrow read them).

Why JSONL: append-only text survives ``kill -9`` (a torn last line is simply skipped by the reader, every
earlier line is intact), can be tailed by byte offset for incremental ingestion, and is readable with ``head``.

Cost on the training thread: ``on_step`` only converts the values to float and appends one tuple to a list
under a lock (microseconds). A daemon thread formats and appends the lines every :data:`FLUSH_S` and
refreshes the heartbeat; ``on_end``/``close`` flush synchronously.

``status.json`` keeps both ``step`` (the last step index the loop reported; the loop counts from 0) and
``steps_done`` (how many steps were reported; the loop's ``RunSummary.steps`` at the end): progress and ETA
use ``steps_done / total``.
"""
from __future__ import annotations

import atexit
import json
import logging
import math
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any, Mapping

from tracer_core.training.hooks import Hooks   # torch-free: training/__init__ imports the loop lazily

from . import schema
from .runfiles import HOST, read_json, write_json_atomic

log = logging.getLogger(__name__)
_MAX_BUFFERED_LINES = 500_000   # if the disk keeps failing, drop rather than grow without bound


def _num(v: float) -> str:
    if math.isfinite(v):
        return repr(v)
    return "NaN" if math.isnan(v) else ("Infinity" if v > 0 else "-Infinity")


def _line(row: Mapping[str, Any]) -> str:
    return json.dumps(row, separators=(",", ":"), allow_nan=True)


def create_run_folder(config: Any, data_dir: str | os.PathLike | None = None, *, status: str = "queued",
                      extra: Mapping[str, Any] | None = None) -> Path:
    """Create ``<data_dir>/runs/<new id>/`` with config.json and status.json, atomically.

    The folder is assembled under a hidden temporary name and renamed into place, so a reader never sees a
    run without its status file. ``config`` is a RunConfig or its dict. ``extra`` adds keys to config.json.
    """
    cfg = config.to_dict() if hasattr(config, "to_dict") else dict(config)
    root = schema.runs_dir(data_dir)
    root.mkdir(parents=True, exist_ok=True)
    for _ in range(100):
        now = time.time()
        run_id = schema.new_run_id(now)
        final = root / run_id
        if final.exists():
            continue
        tmp = root / f".tmp-{run_id}-{os.getpid()}"
        tmp.mkdir()
        header = {"format_version": schema.RUN_FORMAT_VERSION, "run_id": run_id, "created": now, **(extra or {})}
        write_json_atomic(tmp / schema.CONFIG_FILE, {**header, "config": cfg})
        total = cfg.get("train", {}).get("steps", 0)
        write_json_atomic(tmp / schema.STATUS_FILE, {
            "format_version": schema.RUN_FORMAT_VERSION, "run_id": run_id, "status": status, "pid": os.getpid(),
            "host": HOST, "heartbeat": now, "step": 0, "steps_done": 0, "total": total, "created": now,
            "started": None, "ended": None, "error": ""})
        try:
            os.rename(tmp, final)   # fails if a same-named run appeared meanwhile (non-empty target)
            return final
        except OSError:
            for p in tmp.iterdir():
                p.unlink()
            tmp.rmdir()
    raise RuntimeError(f"could not create a unique run folder under {root}")


class RunWriter(Hooks):
    """Hooks that stream one run into its folder. Use as a context manager, or rely on ``on_end``."""

    def __init__(self, run_dir: str | os.PathLike, *, flush_s: float = schema.FLUSH_S,
                 heartbeat_s: float = schema.HEARTBEAT_S, parent_pid: int | None = None):
        """``parent_pid``: stop the run (as "interrupted") once this process is no longer our parent, i.e.
        the dashboard that launched this worker died."""
        self.run_dir = Path(run_dir)
        self._parent_pid = parent_pid
        self.run_id = self.run_dir.name
        self._flush_s, self._heartbeat_s = flush_s, heartbeat_s
        status = read_json(self.run_dir / schema.STATUS_FILE) or {}
        now = time.time()
        self._status: dict[str, Any] = {**status, "format_version": schema.RUN_FORMAT_VERSION,
                                        "run_id": self.run_id, "status": "running", "pid": os.getpid(),
                                        "host": HOST, "heartbeat": now, "error": ""}
        self._lock = threading.Lock()        # guards the buffers and the step counters
        self._io_lock = threading.Lock()     # one writer of the files at a time (flusher vs close)
        self._status_lock = threading.Lock() # snapshot + rename as one unit, so an older snapshot never wins
        self._buffers: dict[str, list[str]] = {t.table: [] for t in schema.TABLES}
        self._steps: list[tuple[int, float, list[tuple[str, str, float]]]] = []
        self._keys: dict[tuple[str, str], str] = {}     # cached '"name":..,"context":..' fragments
        self._files: dict[str, Any] = {}
        self._step, self._done = 0, int(self._status.get("steps_done") or 0)
        self._last_t, self._first = 0.0, None      # _first: (step, time) of the first step, for the rate
        # images/s of the training step (mean of the per-step series after the first step; the final summary's
        # figure replaces it) and the count of unreadable train images skipped, for status.json and the Runs table
        self._ips, self._ips_final, self._skipped = (0.0, 0), None, 0
        self._stop_reason, self._signalled = "", ""
        self._write_error = ""      # first failed write (disk full, folder gone): the run stops as failed
        self._closed = False
        self._wake = threading.Event()
        self._write_status()
        self._thread = threading.Thread(target=self._run, name=f"runwriter-{self.run_id}", daemon=True)
        self._thread.start()
        atexit.register(self._at_exit)

    def _at_exit(self) -> None:
        # the interpreter is leaving without an end report (e.g. an error before training started):
        # keep the buffered rows and say what happened instead of leaving a stale "running"
        self.close("failed", "the process exited before the run reported its end")

    @classmethod
    def create(cls, config: Any, data_dir: str | os.PathLike | None = None, **kwargs: Any) -> "RunWriter":
        """New run folder for ``config`` (a RunConfig) and a writer on it; see ``.run_id`` and ``.run_dir``."""
        return cls(create_run_folder(config, data_dir, status="running"), **kwargs)

    # -- hooks ----------------------------------------------------------------------------------------
    def on_start(self, info: Any) -> None:
        versions = {"python": sys.version.split()[0], **dict(getattr(info, "versions", {}) or {})}
        with self._lock:
            self._status.update(total=int(info.total_steps), started=time.time(), versions=versions,
                                device=getattr(info, "device", ""), precision=getattr(info, "precision", ""),
                                n_params=getattr(info, "n_params", None),
                                n_trainable=getattr(info, "n_trainable", None),
                                world_size=int(getattr(info, "world_size", 1)))
        self._write_status()

    def on_step(self, step: int, scalars: Mapping[tuple[str, str], float]) -> None:
        now = time.time()
        rows = [(name, ctx, float(v)) for (name, ctx), v in scalars.items()]
        ips, skipped = scalars.get(("images_per_s", "")), scalars.get(("skipped_images", "train"))
        with self._lock:
            self._steps.append((int(step), now, rows))
            if ips is not None and self._first is not None:    # the first step (warm-up, compile) is left out
                self._ips = (self._ips[0] + float(ips), self._ips[1] + 1)
            if skipped is not None:
                self._skipped = int(skipped)
            self._step, self._last_t = int(step), now
            self._done += 1
            if self._first is None:
                self._first = (int(step), now)

    def on_eval(self, report: Any) -> None:
        step = int(report.step)
        evals = [_line({"step": step, "dataset": ds, "metric": m, "value": float(v)})
                 for ds, metrics in report.metrics.items() for m, v in metrics.items()]
        bins = [_line({"step": step, "dataset": ds, **b}) for ds, rows in report.reliability.items() for b in rows]
        sims = [_line({"step": step, **row}) for row in report.similarities]
        with self._lock:
            self._buffers["evaluations"] += evals
            self._buffers["reliability"] += bins
            self._buffers["similarities"] += sims
        self._wake.set()    # evaluations are rare and awaited: write them now

    def on_checkpoint(self, step: int, path: str) -> None:
        line = _line({"step": int(step), "kind": "checkpoint", "path": str(path), "wall_time": time.time()})
        with self._lock:
            self._buffers["artifacts"].append(line)
        self._wake.set()

    def on_end(self, summary: Any) -> None:
        status, error = summary.status, summary.error or ""
        if status == "failed" and "KeyboardInterrupt" in error:   # Ctrl-C is not a bug in the run
            status = "interrupted"
        with self._lock:
            self._done = int(summary.steps)
        ips = getattr(summary, "images_per_s", float("nan"))
        skipped = int(getattr(summary, "skipped_images", 0) or 0)
        extra = {"summary": {"steps": summary.steps, "wall_time_s": summary.wall_time_s,
                             "steps_per_s": summary.steps_per_s, "checkpoint": summary.checkpoint,
                             "final_eval": summary.final_eval, "images_per_s": ips, "skipped_images": skipped}}
        with self._lock:     # the run's own figure (hooks.RunSummary) replaces the live estimate
            if ips == ips:
                self._ips_final = float(ips)
            self._skipped = max(self._skipped, skipped)
        self.close(status, error, extra=extra)

    def should_stop(self) -> bool:
        """Polled once per step by the loop: a ``cancel`` file in the run folder, :meth:`request_stop`,
        :meth:`stop_from_signal`, or the launching process gone (``parent_pid``)."""
        if not self._stop_reason:
            if not (self.run_dir / schema.CONFIG_FILE).exists():      # folder deleted by hand mid-run
                self._fail_writes(f"the run folder {self.run_dir} was deleted while the run was running")
            elif (self.run_dir / schema.CANCEL_FILE).exists():
                self.request_stop("cancelled")
            elif self._signalled:
                self.request_stop(self._signalled)
            elif self._parent_pid is not None and os.getppid() != self._parent_pid:
                self.request_stop("interrupted")
        return bool(self._stop_reason)

    def stop_from_signal(self, reason: str = "interrupted") -> None:
        """Like :meth:`request_stop` but takes no lock, so a signal handler may call it (the handler can run
        while this thread holds the writer's lock); the stop is recorded at the next ``should_stop``."""
        self._signalled = reason

    def final_status(self, status: str | None) -> str | None:
        """The status a run ends with: a loop that stopped on request ("cancelled") ends with the stop's reason
        (cancelled, or interrupted after a signal or the launcher's death)."""
        if self._write_error:           # rows or files were lost: never report such a run as done
            return "failed"
        return self._stop_reason if status == "cancelled" and self._stop_reason else status

    @property
    def stop_reason(self) -> str:
        """"" while no stop was asked; else the status the run will end with (cancelled, interrupted)."""
        return self._stop_reason

    def request_stop(self, reason: str = "interrupted") -> None:
        """Ask the loop to stop after the current step; the run ends with status ``reason``."""
        with self._lock:
            if not self._stop_reason:
                self._stop_reason = reason
                self._status["stop_requested_step"] = self._step
        self._write_status()

    # -- lifecycle ------------------------------------------------------------------------------------
    def flush(self) -> None:
        """Write buffered rows now (the background thread does this every ``flush_s`` anyway)."""
        self._flush()

    def close(self, status: str | None = None, error: str = "", *, extra: Mapping[str, Any] | None = None) -> None:
        """Flush everything and write the final status (idempotent; later calls do nothing).

        A loop that stopped because of :meth:`should_stop` reports "cancelled"; the stop reason (cancelled,
        interrupted) is what gets recorded. ``status=None`` means the process is leaving without an end
        report: "interrupted".
        """
        if self._closed:
            return
        self._closed = True
        atexit.unregister(self._at_exit)
        self._wake.set()
        self._thread.join(timeout=10)
        self._flush()
        status = self.final_status(status)
        with self._lock:
            if self._write_error:
                error = f"{self._write_error}" + (f"; then: {error}" if error else "")
            self._status.update(status=status or "interrupted", error=error or "", ended=time.time(), **(extra or {}))
        self._write_status()
        with self._io_lock:
            for f in self._files.values():
                f.close()
            self._files.clear()

    def __enter__(self) -> "RunWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close("done" if not self._stop_reason else self._stop_reason)
        elif issubclass(exc_type, KeyboardInterrupt):
            self.close("interrupted", "KeyboardInterrupt")
        else:
            self.close("failed", f"{exc_type.__name__}: {exc}")

    # -- background flushing --------------------------------------------------------------------------
    def _run(self) -> None:
        last_beat, last_done = time.monotonic(), self._done
        while not self._closed:
            self._wake.wait(self._flush_s)
            self._wake.clear()
            if self._closed:
                break
            self._flush()
            # progress in status.json keeps pace with the flushed rows; otherwise a plain heartbeat
            if self._done != last_done or time.monotonic() - last_beat >= self._heartbeat_s:
                last_beat, last_done = time.monotonic(), self._done
                self._write_status()

    def _series_lines(self, steps: list) -> list[str]:
        out = []
        for step, t, rows in steps:
            tail = f',"wall_time":{t!r}}}'
            for name, ctx, v in rows:
                key = self._keys.get((name, ctx))
                if key is None:
                    key = self._keys[(name, ctx)] = f',"name":{json.dumps(name)},"context":{json.dumps(ctx)},"value":'
                out.append(f'{{"step":{step}{key}{_num(v)}{tail}')
        return out

    def _flush(self) -> None:
        with self._io_lock:
            with self._lock:
                steps, self._steps = self._steps, []
                pending = {k: v for k, v in self._buffers.items() if v}
                for k in pending:
                    self._buffers[k] = []
            if steps:
                pending["series"] = pending.get("series", []) + self._series_lines(steps)
            for table, lines in pending.items():
                self._append(table, lines)

    def _append(self, table: str, lines: list[str]) -> None:
        path = self.run_dir / schema.TABLE_BY_NAME[table].file
        f, pos = self._files.get(table), None
        try:
            if f is None:
                if not self.run_dir.is_dir():       # never recreate a deleted run folder (it has no config)
                    raise FileNotFoundError(f"{self.run_dir}: run folder is gone")
                f = self._files[table] = open(path, "ab", buffering=0)   # unbuffered: nothing left to retry
            pos = f.tell()
            data = ("\n".join(lines) + "\n").encode("utf-8")   # one batch, each line complete
            view = memoryview(data)
            while view:
                view = view[f.write(view):]
        except OSError as e:
            self._undo_partial(table, f, pos)
            with self._lock:
                kept = lines + self._buffers[table]
                self._buffers[table] = kept[-_MAX_BUFFERED_LINES:]
            self._fail_writes(f"could not write {path.name} ({e.strerror or e})")

    def _undo_partial(self, table: str, f, pos: int | None) -> None:
        """Cut a half-written batch off the file, so a later retry adds no torn line and no duplicates."""
        if f is None:
            return
        try:
            if pos is not None:
                os.ftruncate(f.fileno(), pos)
        except OSError as e:
            log.error("run %s: could not remove a partial write from %s (%s)", self.run_id, table, e)
        finally:
            f.close()
            self._files.pop(table, None)

    def _fail_writes(self, message: str) -> None:
        """A write failed: stop the run after this step and make it end as failed with ``message``."""
        with self._lock:
            first = not self._write_error
            if first:
                self._write_error = message
                self._status["write_error"] = message
                self._stop_reason = self._stop_reason or "failed"
        if first:
            log.error("run %s: %s; stopping the run", self.run_id, message)

    def _write_status(self) -> None:
        with self._status_lock:
            with self._lock:
                self._status.update(heartbeat=time.time(), step=self._step, steps_done=self._done)
                if self._first is not None and self._step > self._first[0] and self._last_t > self._first[1]:
                    self._status["steps_per_s"] = (self._step - self._first[0]) / (self._last_t - self._first[1])
                if self._ips_final is not None or self._ips[1]:
                    self._status["images_per_s"] = self._ips_final if self._ips_final is not None else \
                        self._ips[0] / self._ips[1]
                self._status["skipped_images"] = self._skipped
                snapshot = dict(self._status)
            try:
                write_json_atomic(self.run_dir / schema.STATUS_FILE, snapshot)
            except OSError as e:  # the folder may be gone (deleted by the user); never break training for it
                log.warning("run %s: could not write status (%s)", self.run_id, e)
