"""Tail a run's JSONL files by byte offset and parse the new complete lines into Arrow tables.

Only bytes up to the last newline are consumed: a trailing partial line is either still being written or
was torn by a killed process, and it stays unread (the offset does not move past it). A complete line that
does not parse, lacks a key column, or holds an integer outside int64 (e.g. a hand-edited step), is skipped
and counted, never fatal.
"""
from __future__ import annotations

from tracer_core.lazy import lazy

import json
from pathlib import Path

pa = lazy("pyarrow")
pj = lazy("pyarrow.json")

from .schema import TableSpec

CHUNK_BYTES = 64 << 20     # bound the memory of one ingestion step on a huge backlog
_ARROW = {"int": "int64", "float": "float64", "str": "string"}     # pyarrow type factories, by name
_PY = {"int": int, "float": float, "str": str}
_INT64 = (-2 ** 63, 2 ** 63 - 1)


class Truncated(Exception):
    """The file is shorter than what was already ingested (it was replaced): re-ingest it from zero."""


def arrow_schema(spec: TableSpec) -> pa.Schema:
    return pa.schema([(c, getattr(pa, _ARROW[t])()) for c, t in spec.columns])


def read_new(path: Path, offset: int, spec: TableSpec) -> tuple[pa.Table | None, int, int]:
    """``(rows, new_offset, n_bad_lines)`` for the complete lines after ``offset`` (at most CHUNK_BYTES)."""
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return None, offset, 0
    if size < offset:
        raise Truncated(str(path))
    if size == offset:
        return None, offset, 0
    with open(path, "rb") as f:
        f.seek(offset)
        data = f.read(min(size - offset, CHUNK_BYTES))
    end = data.rfind(b"\n")
    if end < 0:
        return None, offset, 0
    data = data[:end + 1]
    table, bad = parse_lines(data, spec)
    return table, offset + end + 1, bad


def parse_lines(data: bytes, spec: TableSpec) -> tuple[pa.Table, int]:
    """Fast path: pyarrow's C++ JSON reader; a block with a bad line falls back to line-by-line parsing."""
    schema = arrow_schema(spec)
    try:
        opts = pj.ParseOptions(explicit_schema=schema, unexpected_field_behavior="ignore")
        table = pj.read_json(pa.BufferReader(data), parse_options=opts,
                             read_options=pj.ReadOptions(block_size=max(1 << 20, min(len(data), 16 << 20))))
        return table.select(schema.names), 0
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        return _parse_slow(data, spec, schema)


def _parse_slow(data: bytes, spec: TableSpec, schema: pa.Schema) -> tuple[pa.Table, int]:
    cols: dict[str, list] = {c: [] for c, _ in spec.columns}
    bad = 0
    for raw in data.split(b"\n"):
        if not raw.strip():
            continue
        try:
            obj = json.loads(raw)
            row = {c: (None if obj.get(c) is None else _PY[t](obj[c])) for c, t in spec.columns}
            if any(t == "int" and row[c] is not None and not _INT64[0] <= row[c] <= _INT64[1] for c, t in spec.columns):
                raise ValueError("integer out of int64 range")   # one such line must not fail the whole table
        except (ValueError, TypeError, AttributeError, OverflowError):
            bad += 1
            continue
        if any(row[c] is None for c in spec.required):
            bad += 1
            continue
        for c, v in row.items():
            cols[c].append(v)
    return pa.table(cols, schema=schema), bad
