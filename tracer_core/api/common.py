"""Shared helpers of every api module: the services a server holds, the runs frame with labels and strategy
names, run pickers. Strategy names read the method and teacher registries' display labels, never a list here.
"""
from __future__ import annotations

from tracer_core.lazy import lazy

import json
import os
import re
import secrets
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

pd = lazy("pandas")

from tracer_core.methods import REGISTRY as METHOD_REGISTRY
from tracer_core.store import schema
from tracer_core.teachers import KINDS

if TYPE_CHECKING:       # imported where they are opened (Services): the store module pulls in DuckDB's code
    from tracer_core.jobs.runner import JobRunner
    from tracer_core.store.runstore import RunStore

METHOD_LABELS = {name: m.label for name, m in METHOD_REGISTRY.items()}
TEACHER_LABELS = {name: k.label for name, k in KINDS.items()}
TEACHER_HELP = {name: k.help for name, k in KINDS.items()}


class ServicesError(RuntimeError):
    """The run store or the job runner of the data folder could not be opened (the cause is chained)."""


class Services:
    """One RunStore (the DuckDB owner) and one JobRunner on a data folder.

    ``defer=True`` (the dashboard): each opens on first use of ``.store`` / ``.runner``, and the spare worker's
    warm-up waits for :meth:`release_warm`. Why: on a cold start, importing DuckDB and indexing the run
    folders take seconds (more on a large store), and the warm-up is a torch import, seconds of a core; a
    page draws its static parts first and the dashboard releases the warm-up once the page was sent, so
    neither delays the first paint. Thread-safe: every browser session of the server shares one Services."""

    def __init__(self, directory: str | os.PathLike | None = None, *, max_concurrent: int = 1,
                 defer: bool = False):
        self.data_dir = schema.resolve_data_dir(directory)
        self.max_concurrent = max_concurrent
        self._lock = threading.RLock()
        self._store: RunStore | None = None
        self._runner: JobRunner | None = None
        self._warm_held = defer
        if not defer:       # both now, runner first (as before: its recovery marks dead runs before indexing)
            _ = self.runner, self.store

    @property
    def store(self) -> RunStore:
        if self._store is None:
            with self._lock:
                if self._store is None:
                    from tracer_core.store.runstore import RunStore
                    self._store = _opened("run store", lambda: RunStore(self.data_dir, refresh_interval_s=0.5))
        return self._store

    @property
    def runner(self) -> JobRunner:
        if self._runner is None:
            with self._lock:
                if self._runner is None:
                    from tracer_core.jobs.runner import JobRunner
                    warm = None if not self._warm_held else False      # None: $TRACER_WARM_WORKER decides
                    self._runner = _opened("job runner", lambda: JobRunner(
                        self.data_dir, max_concurrent=self.max_concurrent, warm=warm))
        return self._runner

    @property
    def store_open(self) -> bool:
        """Whether the store has been opened (``defer=True``: by its first use)."""
        return self._store is not None

    def release_warm(self) -> None:
        """Let the job runner start its pre-warmed spare worker (once; a no-op unless ``defer=True``)."""
        with self._lock:
            if not self._warm_held:
                return
            self._warm_held = False
            if self._runner is not None:
                from tracer_core.jobs.runner import WARM_ENV
                # the runner's public switch; its supervisor starts the spare on its next tick (<= poll_s)
                self._runner.warm = os.environ.get(WARM_ENV, "1").strip() != "0"

    def close(self) -> None:
        with self._lock:
            runner, store, self._runner, self._store = self._runner, self._store, None, None
        if runner is not None:
            runner.shutdown()
        if store is not None:
            store.close()


def _opened(what: str, open_it):
    try:
        return open_it()
    except Exception as e:
        raise ServicesError(f"could not open the {what}: {e}") from e


def data_dir() -> Path:
    """``$TRACER_DATA_DIR``, else ``<repo>/data``."""
    return schema.resolve_data_dir()


def open_services(directory: str | os.PathLike | None = None, *, defer: bool = False) -> Services:
    """The store and job runner of the data folder (see :class:`Services`; ``defer``: open on first use).
    Concurrency from ``$TRACER_MAX_CONCURRENT`` (default 1: on 2 cores one run at a time gives the first
    points fastest)."""
    return Services(directory, max_concurrent=int(os.environ.get("TRACER_MAX_CONCURRENT", "1")), defer=defer)


def job_counts(services: Services) -> tuple[int, int]:
    """(running, queued) runs of the data folder, without pandas (the sidebar's counter, every 3 s)."""
    states = [j.status for j in services.runner.jobs()]
    return states.count("running"), states.count("queued")


def new_client_token() -> str:
    """Per browser session: the job runner's idempotency token (a double click starts one run)."""
    return secrets.token_hex(8)


# Markdown-significant characters. "_" only at a word edge (snake_case stays as typed: CommonMark does not
# emphasise inside a word); "-", "+", "=", ">" and a number's "." only where they would open a list or heading.
_MD_ALWAYS = re.compile(r"([\\`*\[\]()<#!:$~&|{}])")
_MD_EDGE_UNDERSCORE = re.compile(r"(?<![0-9A-Za-z])_|_(?![0-9A-Za-z])")
_MD_LINE_START = re.compile(r"^(\s*)([-+=>]|\d+[.)])")


def md(value: Any) -> str:
    """User text (a run name, tag, path or error message) for a Markdown element (st.info, st.caption, a
    progress text, ...), shown as typed: Markdown-significant ASCII punctuation is backslash-escaped
    (CommonMark), so ``![x](http://host/p.png)`` is text, not an image the browser fetches, and
    ``:material/...:`` or ``:red[...]`` is not a directive. Newlines become spaces (no block structure)."""
    text = " ".join(str(value).splitlines())
    text = _MD_EDGE_UNDERSCORE.sub(r"\\_", _MD_ALWAYS.sub(r"\\\1", text))
    return _MD_LINE_START.sub(lambda m: m.group(1) + m.group(2)[:-1] + "\\" + m.group(2)[-1], text)


def run_config(config_json: str | None) -> dict:
    """A run's stored config as a dict; {} when it is missing or not a JSON object (a garbled config.json)."""
    try:
        cfg = json.loads(config_json) if isinstance(config_json, str) and config_json else {}
    except ValueError:
        return {}
    return cfg if isinstance(cfg, dict) else {}


def id_set(config_json: str | None) -> str:
    """The run's in-distribution (train) set name, "" when unknown."""
    data = run_config(config_json).get("data", {})
    return str(data.get("train_set", "")) if isinstance(data, dict) else ""


def teacher_label(teacher: Any) -> str:
    """How a teacher kind is spelled in strategy names and legends ("EMA", "WMA", "frozen", ...)."""
    t = str(teacher or "none")
    return TEACHER_LABELS.get(t, t)


def has_teacher(teachers: pd.Series) -> pd.Series:
    """Per run: whether its teacher kind builds a teacher (every registered kind but "none")."""
    return teachers.fillna("none").astype(str).ne("none")


def strategy(method: Any, teacher: Any) -> str:
    """"TRACER (WMA teacher)": the method's and the teacher kind's registry labels."""
    m = METHOD_LABELS.get(str(method), str(method))
    t = str(teacher or "none")
    return m if t == "none" else f"{m} ({teacher_label(t)} teacher)"


def run_labels(runs: pd.DataFrame) -> pd.Series:
    """Short unique legend labels: the run name, plus the seed or a short id where names repeat."""
    if runs.empty:
        return pd.Series([], dtype=str)
    label = runs["name"].astype(str)
    dup = label.duplicated(keep=False)
    label = label.where(~dup, label + " s" + runs["seed"].astype("string").fillna("?"))
    dup = label.duplicated(keep=False)
    return label.where(~dup, label + " ·" + runs["run_id"].str[-4:]).set_axis(runs["run_id"])


def runs_frame(services: Services, run_ids: Sequence[str] | None = None, **filters: Any) -> pd.DataFrame:
    runs = services.store.list_runs(run_ids=list(run_ids) if run_ids is not None else None, **filters)
    if runs.empty:
        return runs.assign(label=pd.Series(dtype=str), strategy=pd.Series(dtype=str))
    runs["label"] = run_labels(runs).to_numpy()
    runs["strategy"] = [strategy(m, t) for m, t in zip(runs["method"], runs["teacher"])]
    return runs


def with_runs(frame: pd.DataFrame, runs: pd.DataFrame) -> pd.DataFrame:
    """``frame`` (with run_id) joined with each run's label, strategy and teacher."""
    return frame.merge(runs[["run_id", "label", "strategy", "teacher"]], on="run_id", how="left")


def run_choices(runs: pd.DataFrame, with_status: bool = False) -> dict[str, str]:
    """Options of a run picker, in the frame's order: run_id -> "label — strategy" (+ " (status)")."""
    text = runs["label"] + " — " + runs["strategy"]
    if with_status:
        text = text + " (" + runs["status"] + ")"
    return dict(zip(runs["run_id"], text))


def keep_valid(selection: Sequence | None, choices: Mapping, default: Sequence = ()) -> list:
    """A multiselect's stored value without the keys no longer in ``choices`` (``default`` when unset)."""
    return [k for k in (default if selection is None else selection) if k in choices]
