"""The run-store contract shared by the writer (training processes) and the reader (RunStore, charts).

Torch-free, DuckDB-free and pyarrow-free: a training worker, the dashboard and ``tracer_core.charts`` all import it.

Two independent versions:

* ``RUN_FORMAT_VERSION``: the layout of one run folder ``<data_dir>/runs/<run_id>/`` (written by
  :mod:`tracer_core.store.writer`). A reader refuses folders *newer* than it knows, with a message.
* ``STORE_SCHEMA_VERSION``: the tables of the DuckDB file ``<data_dir>/store/tracer.duckdb``. That file is a
  cache of the run folders, so a mismatch means "rebuild it", never "fail".

A series is data, not a key string: ``(run_id, name, context, step, value)``. What a series *means* (label,
unit, direction, bounds, log-scale default, group) is declared once in :data:`SERIES`; charts and tables read
it from here, so a new statistic shows up everywhere without touching a page.
"""
from __future__ import annotations

import os
import re
import secrets
import time
from dataclasses import dataclass
from pathlib import Path

RUN_FORMAT_VERSION = 1
STORE_SCHEMA_VERSION = 5   # 2: runs.device (e.g. "cuda:0 x4 (torch.distributed, nccl)"); 3: sealed runs + compaction;
#                            4: runs.images_per_s, runs.skipped_images (from status.json, for the Runs table);
#                            5: series.run_key (an integer per run id: exact zone maps, see run_key())

# -- run folder layout ---------------------------------------------------------------------------------

CONFIG_FILE = "config.json"      # RunConfig.to_dict() plus {"format_version", "run_id", "created"}; never rewritten
STATUS_FILE = "status.json"      # rewritten atomically (tmp + rename) by the run's process
META_FILE = "meta.json"          # user edits (name, tags) made from the dashboard/CLI; absent until the first edit
CANCEL_FILE = "cancel"           # its existence asks the run to stop after the current step
WORKER_LOG = "worker.log"        # stdout/stderr of a dashboard-launched worker

STATUSES = ("queued", "running", "done", "failed", "cancelled", "interrupted")
ACTIVE_STATUSES = ("queued", "running")
FINAL_STATUSES = ("done", "failed", "cancelled", "interrupted")
INCOMPATIBLE = "incompatible"    # store-only status: the folder cannot be read by this version

HEARTBEAT_S = 1.0                # the writer refreshes status.json this often while the process lives
FLUSH_S = 0.5                    # buffered rows reach disk at least this often
STALE_AFTER_S = 30.0             # a run whose heartbeat is older than this is shown as interrupted


@dataclass(frozen=True)
class TableSpec:
    """One append-only JSONL file in a run folder and the DuckDB table it is ingested into.

    Every line is one JSON object with exactly these columns (missing keys read as null; a line whose key
    columns are null is dropped). Types are "int", "float" or "str".
    """
    table: str
    file: str
    columns: tuple[tuple[str, str], ...]
    required: tuple[str, ...]     # rows with a null in one of these are ignored
    keyed: bool = False           # the table also stores run_key(run_id) as its last column (see run_key)


TABLES: tuple[TableSpec, ...] = (
    TableSpec("series", "series.jsonl",
              (("step", "int"), ("name", "str"), ("context", "str"), ("value", "float"), ("wall_time", "float")),
              ("step", "name"), keyed=True),
    TableSpec("evaluations", "evaluations.jsonl",
              (("step", "int"), ("dataset", "str"), ("metric", "str"), ("value", "float")),
              ("step", "dataset", "metric")),
    TableSpec("reliability", "reliability.jsonl",
              (("step", "int"), ("dataset", "str"), ("model", "str"), ("bin", "int"), ("lo", "float"),
               ("hi", "float"), ("count", "float"), ("mean_confidence", "float"), ("accuracy", "float")),
              ("step", "dataset", "bin")),
    TableSpec("similarities", "similarities.jsonl",
              (("step", "int"), ("tower", "str"), ("layer", "str"), ("layer_index", "int"), ("pair", "str"),
               ("kind", "str"), ("value", "float")),
              ("step", "layer")),
    TableSpec("artifacts", "artifacts.jsonl",
              (("step", "int"), ("kind", "str"), ("path", "str"), ("wall_time", "float")),
              ("path",)),
)
TABLE_BY_NAME = {t.table: t for t in TABLES}

_SQL_TYPES = {"int": "BIGINT", "float": "DOUBLE", "str": "VARCHAR"}

# runs: one row per run folder; `status` is the *effective* status (liveness applied), `file_status` what
# status.json says. Timestamps are UTC.
RUNS_DDL = """
CREATE TABLE IF NOT EXISTS runs (
  run_id VARCHAR PRIMARY KEY, name VARCHAR, preset VARCHAR, method VARCHAR, teacher VARCHAR, seed BIGINT,
  config VARCHAR, tags VARCHAR[], status VARCHAR, file_status VARCHAR, step BIGINT, steps_done BIGINT, total BIGINT,
  steps_per_s DOUBLE, created TIMESTAMP, started TIMESTAMP, ended TIMESTAMP, heartbeat TIMESTAMP,
  error VARCHAR, host VARCHAR, pid BIGINT, versions VARCHAR, format_version BIGINT, run_dir VARCHAR,
  device VARCHAR, images_per_s DOUBLE, skipped_images BIGINT)
"""
META_DDL = "CREATE TABLE IF NOT EXISTS store_meta (key VARCHAR PRIMARY KEY, value VARCHAR)"
# byte offset up to which each run file has been ingested (only complete lines are consumed)
OFFSETS_DDL = ("CREATE TABLE IF NOT EXISTS ingest_offsets (run_id VARCHAR, file VARCHAR, byte_offset BIGINT, "
               "PRIMARY KEY (run_id, file))")


# runs in a final status whose files were read to the end: immutable, skipped by refresh (store/indexer.py)
SEALED_DDL = "CREATE TABLE IF NOT EXISTS sealed (run_id VARCHAR PRIMARY KEY)"


def live_table(spec: TableSpec) -> str:
    """In a store over Parquet (a second process, store/compact.py): the in-memory table that holds the rows
    of the runs that are not compacted; ``spec.table`` is then a view (these rows UNION ALL the Parquet)."""
    return f"{spec.table}_live"


def table_ddl(spec: TableSpec, name: str | None = None) -> str:
    cols = ", ".join(f'"{c}" {_SQL_TYPES[t]}' for c, t in spec.columns)
    key = ", run_key BIGINT" if spec.keyed else ""
    # no primary key on the hot append tables: index upkeep slows appends; zonemaps are automatic
    return f"CREATE TABLE IF NOT EXISTS {name or spec.table} (run_id VARCHAR, {cols}{key})"


def row_columns(spec: TableSpec) -> list[str]:
    """The stored columns of a row table in table order, quoted: run_id, the spec's columns[, run_key]."""
    return ["run_id"] + [f'"{c}"' for c, _ in spec.columns] + (["run_key"] if spec.keyed else [])


_RUN_ID = re.compile(r"(\d{8})-(\d{6})-([0-9a-f]{4})")


def run_key(run_id: str) -> int | None:
    """An integer per run id, increasing with creation time: ``YYYYMMDDHHMMSS * 65536 + int(xxxx, 16)`` for
    ids in :func:`new_run_id`'s format, None for any other folder name.

    Why: DuckDB keeps only a short prefix (12 characters in 2.0) of a VARCHAR in a row group's min/max
    statistics, and run ids created within ten minutes share it, so a filter on run_id cannot skip their row
    groups (a 6-run chart among 1,000 runs created at once scanned 851 of 2,000 row groups). Integer statistics
    are exact, and a run's rows are contiguous, so a filter on run_key reads about the runs' own row groups.
    Computed here only (the indexer stores it; queries pass it as a constant), never parsed again in SQL."""
    m = _RUN_ID.fullmatch(run_id)
    return int(m[1] + m[2]) * 65536 + int(m[3], 16) if m else None


def all_ddl(over_parquet: bool = False) -> list[str]:
    """The store's tables; ``over_parquet``: the row tables are ``<table>_live`` (their views are made by
    the indexer, which knows the compacted files)."""
    rows = [table_ddl(t, live_table(t) if over_parquet else None) for t in TABLES]
    return [META_DDL, RUNS_DDL, OFFSETS_DDL, SEALED_DDL] + rows


# -- series metadata -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class SeriesMeta:
    name: str
    label: str
    unit: str = ""
    higher_is_better: bool | None = None   # None: neither direction is "better" (entropy, lr, ...)
    lo: float | None = None                # natural bounds of the value (None: unbounded on that side)
    hi: float | None = None
    log_scale: bool = False                # default y-axis scale
    group: str = "other"                   # teacher | loss | optim | eval | other
    contexts: tuple[str, ...] = ("",)      # the contexts training is known to emit
    description: str = ""


_DIRS = ("img", "text", "combined")


def _teacher(name, label, hib, lo=0.0, hi=1.0, unit="", log=False, contexts=_DIRS, desc=""):
    return SeriesMeta(name, label, unit, hib, lo, hi, log, "teacher", contexts, desc)


LOSS_CONTEXTS = ("total", "clip_loss", "distill_loss", "crd_loss", "fd_loss", "icl_loss", "cross_kd_loss",
                 "ce_loss", "cross_fnorm_loss", "orth_loss", "l2sp_loss")

SERIES: dict[str, SeriesMeta] = {m.name: m for m in (
    _teacher("teacher_avg_entropy", "Teacher entropy", None, hi=None, unit="nats",
             desc="mean_i -sum_j P_ij ln P_ij of the teacher's softmax"),
    _teacher("teacher_avg_confidence", "Teacher confidence", None, desc="mean_i max_j P_ij"),
    _teacher("teacher_student_agreement", "Teacher-student agreement", True,
             desc="fraction of rows where teacher and student argmax agree"),
    _teacher("teacher_student_kl", "KL(teacher || student)", False, hi=None, unit="nats", log=True,
             desc="batchmean KL of the student's from the teacher's distribution"),
    _teacher("teacher_student_top5_alignment", "Top-5 alignment", True, contexts=("img", "text"),
             desc="overlap of teacher and student top-5 index sets / 5"),
    _teacher("teacher_prediction_diversity", "Teacher prediction diversity", None,
             desc="1 - Gini of the sorted teacher probabilities"),
    _teacher("teacher_accuracy", "Teacher batch accuracy", True),
    _teacher("student_accuracy", "Student batch accuracy", True),
    _teacher("teacher_student_accuracy_diff", "Teacher - student accuracy", None, lo=-1.0),
    _teacher("teacher_gt_prob", "Teacher p(paired caption)", True),
    _teacher("student_gt_prob", "Student p(paired caption)", True),
    _teacher("teacher_effective_temperature", "Teacher effective temperature", None, hi=None,
             desc="ln(B) / mean entropy"),
    SeriesMeta("loss", "Loss", "", False, None, None, False, "loss", LOSS_CONTEXTS,
               "context 'total' is the optimised sum; other contexts are its named terms"),
    SeriesMeta("lr", "Learning rate", "", None, 0.0, None, True, "optim"),
    SeriesMeta("grad_norm", "Gradient norm", "", None, 0.0, None, True, "optim"),
    SeriesMeta("logit_scale", "Logit scale", "", None, 0.0, None, False, "optim", ("",), "s = exp(l)"),
    SeriesMeta("teacher_weight", "Teacher update weight", "", None, 0.0, 1.0, False, "optim", ("",),
               "WMA weight of the newest student in the teacher"),
    SeriesMeta("step_time", "Step time", "s", False, 0.0, None, False, "optim"),
    SeriesMeta("images_per_s", "Images per second (training step)", "images/s", True, 0.0, None, False, "optim",
               ("",), "global batch / step time (data waits included)"),
    SeriesMeta("data_wait", "Data wait per step", "s", False, 0.0, None, False, "optim", ("",),
               "time the step was blocked on the data loader"),
    SeriesMeta("skipped_images", "Skipped (unreadable) images", "images", False, 0.0, None, False, "optim",
               ("train",), "distinct train images that could not be decoded, cumulative"),
)}

EVAL_METRICS: dict[str, SeriesMeta] = {m.name: m for m in (
    SeriesMeta("accuracy", "Accuracy", "", True, 0.0, 1.0, False, "eval"),
    SeriesMeta("ece", "ECE", "", False, 0.0, 1.0, False, "eval", description="expected calibration error"),
    SeriesMeta("ece_batch", "ECE (per batch)", "", False, 0.0, 1.0, False, "eval"),
    SeriesMeta("mce", "MCE", "", False, 0.0, 1.0, False, "eval", description="maximum calibration error"),
    SeriesMeta("nll", "NLL", "nats", False, 0.0, None, False, "eval"),
    SeriesMeta("brier", "Brier score", "", False, 0.0, 2.0, False, "eval"),
)}


def _generic(name: str, group: str = "other") -> SeriesMeta:
    return SeriesMeta(name, name.replace("_", " ").strip().capitalize() or name, group=group)


def series_meta(name: str) -> SeriesMeta:
    """Metadata of a training series; unknown names get generic metadata (never an error).

    ``post_temp_<stat>`` (statistics recomputed at the distillation temperature) inherits ``<stat>``'s.
    """
    if name in SERIES:
        return SERIES[name]
    if name.startswith("post_temp_") and name[len("post_temp_"):] in SERIES:
        base = SERIES[name[len("post_temp_"):]]
        return SeriesMeta(name, base.label + " (post-temperature)", base.unit, base.higher_is_better, base.lo,
                          base.hi, base.log_scale, base.group, base.contexts, base.description)
    return _generic(name)


def eval_metric_meta(metric: str) -> SeriesMeta:
    """Metadata of an evaluation metric; ``teacher_<metric>`` is the teacher's number for the same metric."""
    if metric in EVAL_METRICS:
        return EVAL_METRICS[metric]
    if metric.startswith("teacher_") and metric[len("teacher_"):] in EVAL_METRICS:
        base = EVAL_METRICS[metric[len("teacher_"):]]
        return SeriesMeta(metric, "Teacher " + base.label, base.unit, base.higher_is_better, base.lo, base.hi,
                          base.log_scale, "eval", base.contexts, base.description)
    return _generic(metric, group="eval")


# -- locations and ids ---------------------------------------------------------------------------------

REPO_ROOT = Path(__file__).resolve().parents[2]   # the folder that holds tracer_core/


def resolve_data_dir(data_dir: str | os.PathLike | None = None) -> Path:
    """Argument, else ``$TRACER_DATA_DIR``, else ``<repo>/data``."""
    if data_dir is None:
        data_dir = os.environ.get("TRACER_DATA_DIR") or REPO_ROOT / "data"
    return Path(data_dir).expanduser().resolve()


def runs_dir(data_dir: str | os.PathLike | None = None) -> Path:
    return resolve_data_dir(data_dir) / "runs"


def store_path(data_dir: str | os.PathLike | None = None) -> Path:
    return resolve_data_dir(data_dir) / "store" / "tracer.duckdb"


def compact_dir(data_dir: str | os.PathLike | None = None) -> Path:
    """One folder per finished run with its rows as Parquet (a cache like the DuckDB file; store/compact.py)."""
    return resolve_data_dir(data_dir) / "store" / "compact"


def edits_journal(data_dir: str | os.PathLike | None = None) -> Path:
    """Run ids whose meta.json a store edited (one per line): other processes re-read just those runs."""
    return resolve_data_dir(data_dir) / "store" / "edits.jsonl"


def new_run_id(now: float | None = None) -> str:
    """``YYYYMMDD-HHMMSS-xxxx`` in UTC: sorts by creation time; 16 random bits make same-second ids distinct
    (the writer also creates the folder exclusively and retries on a clash)."""
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime(time.time() if now is None else now))
    return f"{stamp}-{secrets.token_hex(2)}"
