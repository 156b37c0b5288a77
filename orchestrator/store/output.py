"""Query results out: a text table, CSV, JSON or Parquet, to stdout or a file written whole.

Text formats cannot hold a map, so ``miub_layers`` becomes a JSON object in CSV and table
output (and a nested object in JSON). JSON output is one array of row objects, with NaN and
infinities as null (JSON has no such numbers) and times in ISO 8601.
"""
from __future__ import annotations

import io
import json
import math
import os
import sys
import uuid
from pathlib import Path
from typing import TextIO

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from orchestrator.errors import UsageError
from orchestrator.table import format_table

FORMATS = ("table", "csv", "json", "parquet")


def check_target(fmt: str, output: str | None) -> None:
    """Refuse a format/destination pair before any work is done."""
    if fmt not in FORMATS:
        raise UsageError(f"--format: {fmt!r} is not a format; formats: {', '.join(FORMATS)}")
    if fmt == "parquet" and not output:
        raise UsageError("--format parquet needs --output FILE (Parquet is binary)")
    if output is not None:
        target = Path(output)
        if target.is_dir():
            raise UsageError(f"--output: {output!r} is a directory; give a file name")
        if not target.parent.is_dir():
            raise UsageError(f"--output: directory {str(target.parent)!r} does not exist")


def write_result(table: pa.Table, fmt: str, output: str | None, stdout: TextIO | None = None) -> None:
    """Write ``table`` in ``fmt`` to ``output`` (via a temporary file and a rename) or stdout."""
    check_target(fmt, output)
    if output is None:
        (stdout or sys.stdout).write(render(table, fmt))
        return
    target = Path(output)
    tmp = target.parent / f".{target.name}.tmp-{uuid.uuid4().hex[:8]}"
    try:
        if fmt == "parquet":
            pq.write_table(table, tmp)
        else:
            tmp.write_text(render(table, fmt))
        os.replace(tmp, target)
    except OSError as exc:
        raise UsageError(f"--output: cannot write {output!r}: {exc.strerror or exc}") from exc
    finally:
        if tmp.exists():
            tmp.unlink()


def render(table: pa.Table, fmt: str) -> str:
    if fmt == "table":
        rows = _maps_as_json(table).to_pylist()
        count = f"({table.num_rows} row{'s' if table.num_rows != 1 else ''})"
        return format_table(rows, table.column_names) + f"\n{count}\n"
    if fmt == "csv":
        buffer = io.BytesIO()
        pacsv.write_csv(_maps_as_json(table), buffer)
        return buffer.getvalue().decode()
    if fmt == "json":
        rows = [{k: _json_value(v) for k, v in row.items()} for row in table.to_pylist()]
        body = ",\n".join(json.dumps(row, allow_nan=False) for row in rows)
        return f"[\n{body}\n]\n" if rows else "[]\n"
    raise UsageError(f"--format: {fmt!r} cannot be printed")


def _maps_as_json(table: pa.Table) -> pa.Table:
    for i, field in enumerate(table.schema):
        if pa.types.is_map(field.type):
            text = [None if v is None else json.dumps({k: _json_value(x) for k, x in v}) for v in table.column(i).to_pylist()]
            table = table.set_column(i, pa.field(field.name, pa.string()), pa.array(text, pa.string()))
    return table


def _json_value(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, list) and all(isinstance(x, tuple) and len(x) == 2 for x in value):
        return {k: _json_value(x) for k, x in value}  # a map column
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return value
