"""Small helpers for run folders shared by the writer, the store and the job runner (stdlib only).

Liveness rule (one place, used by the store to *show* a status and by the job runner to *record* one):
a run whose status.json says queued/running is really

* ``interrupted`` when its process (same host) no longer exists, or its heartbeat is older than
  :data:`~tracer_core.store.schema.STALE_AFTER_S` (running runs only; covers other hosts, hangs and pid reuse);
* otherwise what the file says.
"""
from __future__ import annotations

import json
import os
import re
import socket
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from . import schema

_RUN_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
HOST = socket.gethostname()


class RunFolderError(ValueError):
    """A run id or run folder is invalid; the message says what to do."""


def validate_run_id(run_id: str) -> str:
    """Run ids become folder names: allow only a safe alphabet (no '/', no '..', no quotes)."""
    if not isinstance(run_id, str) or not _RUN_ID_RE.match(run_id) or run_id in (".", ".."):
        raise RunFolderError(f"invalid run id {run_id!r}: expected letters, digits, '.', '_' or '-'")
    return run_id


def write_json_atomic(path: Path, obj: dict[str, Any]) -> None:
    """Readers never see a half-written file: write a sibling temp file, then rename over the target."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=1, allow_nan=True)
    os.replace(tmp, path)


def read_json(path: Path) -> dict[str, Any] | None:
    """The object in ``path``; None when the file is missing. Raises RunFolderError when it is not JSON."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as e:
        raise RunFolderError(f"{path.name} is not valid JSON ({e})") from None
    if not isinstance(obj, dict):
        raise RunFolderError(f"{path.name} does not hold a JSON object")
    return obj


def pid_alive(pid: int | None) -> bool:
    """True while a process with this pid exists and is not a zombie (a killed, unreaped child)."""
    if not pid or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            state = f.read().rsplit(b")", 1)[1].split()[0]
        return state not in (b"Z", b"X")
    except (OSError, IndexError):
        return True  # no /proc (macOS): trust kill(0)


def effective_status(status: dict[str, Any], now: float | None = None) -> tuple[str, str]:
    """``(status, reason)`` after applying the liveness rule of this module's docstring."""
    state = status.get("status", "")
    if state not in schema.ACTIVE_STATUSES:
        return state, ""
    now = time.time() if now is None else now
    same_host = status.get("host") == HOST
    pid = status.get("pid")
    if same_host and pid and not pid_alive(int(pid)):
        who = "the process that queued it" if state == "queued" else "its process"
        return "interrupted", f"{who} (pid {pid}) is gone"
    beat = status.get("heartbeat")
    if state == "running" and beat is not None and now - float(beat) > schema.STALE_AFTER_S:
        return "interrupted", f"no heartbeat for {now - float(beat):.0f} s"
    return state, ""


@dataclass
class RunFolder:
    """What one run folder holds; ``problem`` is set (and the rest may be empty) when it cannot be read."""
    run_id: str
    path: Path
    config: dict[str, Any] = field(default_factory=dict)
    status: dict[str, Any] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)
    problem: str = ""


def _check_version(obj: dict[str, Any], what: str) -> str:
    v = obj.get("format_version")
    if not isinstance(v, int):
        return f"{what} has no format_version: not a TRACER run folder"
    if v > schema.RUN_FORMAT_VERSION:
        return (f"{what} has run format {v}, newer than this TRACER Studio reads ({schema.RUN_FORMAT_VERSION}); "
                "upgrade TRACER Studio to see this run")
    return ""


def read_run_folder(path: Path) -> RunFolder:
    """Read config/status/meta of a run folder. Never raises for a bad folder: sets ``problem`` instead."""
    rf = RunFolder(run_id=path.name, path=path)
    try:
        config = read_json(path / schema.CONFIG_FILE)
        status = read_json(path / schema.STATUS_FILE) or {}
        rf.meta = read_json(path / schema.META_FILE) or {}
    except (RunFolderError, OSError) as e:
        rf.problem = str(e)
        return rf
    if config is None:
        rf.problem = f"{schema.CONFIG_FILE} is missing"
        return rf
    rf.problem = _check_version(config, schema.CONFIG_FILE) or (status and _check_version(status, schema.STATUS_FILE))
    rf.config, rf.status = config, status
    return rf


def list_run_dirs(data_dir: str | os.PathLike | None = None) -> list[Path]:
    """Run folders under ``<data_dir>/runs`` (hidden and temporary entries skipped), sorted by id."""
    root = schema.runs_dir(data_dir)
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if p.is_dir() and _RUN_ID_RE.match(p.name))


def run_dir_of(run_id: str, data_dir: str | os.PathLike | None = None) -> Path:
    return schema.runs_dir(data_dir) / validate_run_id(run_id)


def _ts(t: Any) -> datetime | None:
    return datetime.fromtimestamp(float(t), timezone.utc).replace(tzinfo=None) if t else None


def runs_row(rf: RunFolder) -> list[Any]:
    """The ``runs`` row of a run folder (column order of schema.RUNS_DDL)."""
    if rf.problem:
        return [rf.run_id, rf.run_id] + [None] * 5 + [[], schema.INCOMPATIBLE] + [None] * 9 + [rf.problem] + \
            [None] * 4 + [str(rf.path), None, None, None]
    cfg, st, meta = rf.config.get("config", {}), rf.status, rf.meta
    tags = meta["tags"] if "tags" in meta else cfg.get("tags", [])
    seed = cfg.get("train", {}).get("seed")
    status, reason = effective_status(st)
    return [rf.run_id, meta.get("name") or cfg.get("name") or rf.run_id, cfg.get("preset"), cfg.get("method"),
            cfg.get("teacher", {}).get("kind"), seed if isinstance(seed, int) else None, json.dumps(cfg),
            [str(t) for t in tags], status, st.get("status"), st.get("step"), st.get("steps_done"), st.get("total"),
            st.get("steps_per_s"), _ts(rf.config.get("created") or st.get("created")), _ts(st.get("started")),
            _ts(st.get("ended")), _ts(st.get("heartbeat")), st.get("error") or reason or None, st.get("host"),
            st.get("pid"), json.dumps(st.get("versions", {})), rf.config.get("format_version"), str(rf.path),
            st.get("device") or None, _num(st.get("images_per_s")), _num(st.get("skipped_images"), int)]


def _num(v: Any, kind=float) -> Any:
    """A number from status.json, None when absent or not a finite number (older runs lack these keys)."""
    return kind(v) if isinstance(v, (int, float)) and v == v and abs(v) != float("inf") else None
