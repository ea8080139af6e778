"""Export a set of runs to CSV or Parquet files, one file per table (takes a DuckDB cursor)."""
from __future__ import annotations

from tracer_core.lazy import lazy

from pathlib import Path

pa = lazy("pyarrow")
pacsv = lazy("pyarrow.csv")
pq = lazy("pyarrow.parquet")

from . import schema

ALWAYS = ("runs", "series", "evaluations")   # written even when empty, so scripts can rely on them


def export_tables(cur, run_ids: list[str], fmt: str, out: Path) -> list[Path]:
    """``<out>/<table>.<fmt>`` for runs, series, evaluations and the non-empty small tables."""
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for table in ["runs"] + [t.table for t in schema.TABLES]:   # table names from the schema, not users
        keyed = table in schema.TABLE_BY_NAME and schema.TABLE_BY_NAME[table].keyed
        cols = "* EXCLUDE (run_key)" if keyed else "*"           # run_key is the store's, not the user's
        data = cur.sql(f"SELECT {cols} FROM {table} WHERE list_contains(?::VARCHAR[], run_id) ORDER BY ALL",
                       params=[run_ids]).to_arrow_table()
        if data.num_rows == 0 and table not in ALWAYS:
            continue
        path = out / f"{table}.{fmt}"
        if fmt == "parquet":
            pq.write_table(data, path)
        else:
            pacsv.write_csv(_csv_safe(data), path)
        written.append(path)
    return written


FORMULA_START = ("=", "+", "-", "@", "\t", "\r")   # OWASP "CSV Injection": a spreadsheet runs such cells


def _csv_safe(table: pa.Table) -> pa.Table:
    """CSV has no list type: tags become 'a;b'. Text cells that a spreadsheet would run as a formula (a run
    named ``=HYPERLINK(...)``) get a leading ``'``, as OWASP recommends; numbers are left alone."""
    for i, field in enumerate(table.schema):
        if pa.types.is_list(field.type):
            joined = [";".join(v) if v else "" for v in table.column(i).to_pylist()]
            table = table.set_column(i, field.name, pa.array(joined, pa.string()))
        if pa.types.is_string(table.schema.field(i).type) or pa.types.is_large_string(table.schema.field(i).type):
            cells = [_cell(v) for v in table.column(i).to_pylist()]
            table = table.set_column(i, field.name, pa.array(cells, pa.string()))
    return table


def _cell(v: str | None) -> str | None:
    return "'" + v if v and v.startswith(FORMULA_START) else v
