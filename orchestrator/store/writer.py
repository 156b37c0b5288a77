"""Buffered Parquet writer: rows in, whole files out, never a half-written file visible.

Rows are buffered and flushed every ``flush_rows`` rows or ``flush_seconds`` seconds (and
on :meth:`ResultWriter.close`). A flush turns the buffer into columns (one list
comprehension and one ``pa.array`` per column, the cheapest way from Python dicts to Arrow)
and lands as one new file through :func:`~orchestrator.store.files.write_whole` (a local
directory or any pyarrow filesystem URI). If a
flush fails, its rows stay buffered for the next one.
"""
from __future__ import annotations

import datetime as dt
import json
import logging
import math
import operator
import time
import uuid
from pathlib import Path
from typing import Any, Callable

import pyarrow as pa

from orchestrator.store.files import experiment_path, file_schema, write_whole
from orchestrator.store.location import locate

log = logging.getLogger(__name__)


class ResultWriter:
    """Append rows for one experiment; each flush lands as one new Parquet file."""

    def __init__(self, root: str | Path, experiment: str, *, flush_rows: int = 256, flush_seconds: float = 10.0):
        self.location = locate(root)
        self._path = experiment_path(self.location, experiment)
        self.directory = self.location.name_of(self._path)  # for messages: a local path or a URI
        self.flush_rows = flush_rows
        self.flush_seconds = flush_seconds
        self._rows: list[dict] = []
        self._last_flush = time.monotonic()
        self._schema = file_schema()
        self.files_written = 0

    def append(self, row: dict) -> None:
        """Buffer one row (keys are column names; missing columns are null, others ignored)."""
        self._rows.append(row)
        if len(self._rows) >= self.flush_rows or time.monotonic() - self._last_flush >= self.flush_seconds:
            self.flush()

    def extend(self, rows: list[dict]) -> None:
        for row in rows:
            self.append(row)

    def seconds_since_flush(self) -> float:
        return time.monotonic() - self._last_flush

    def flush(self) -> str | None:
        """Write buffered rows as one file; return its path or URI (None when nothing was buffered)."""
        self._last_flush = time.monotonic()
        if not self._rows:
            return None
        table = rows_to_table(self._rows, self._schema)
        name = f"part-{time.time_ns():020d}-{uuid.uuid4().hex[:8]}.parquet"
        path = write_whole(table, self.location, self._path, name)
        self._rows = []
        self.files_written += 1
        return self.location.name_of(path)

    def close(self) -> None:
        self.flush()

    def __enter__(self) -> "ResultWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def rows_to_table(rows: list[dict], schema: pa.Schema) -> pa.Table:
    """Dict rows to a table of ``schema``; a value that does not fit its column is coerced
    (``8.0`` into an integer column, a dict into a text column) or, failing that, stored as
    null with a logged warning, so one odd metric never loses a whole batch of rows."""
    arrays = []
    for field, values in zip(schema, _columns(rows, schema.names)):
        try:
            arrays.append(pa.array(values, type=field.type))
        except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError, TypeError, ValueError):
            arrays.append(_coerced(list(values), field))
    return pa.Table.from_arrays(arrays, schema=schema)


def _columns(rows: list[dict], names: list[str]) -> list:
    """Rows transposed to columns. Rows holding every column (the callback's) go through
    ``itemgetter`` and ``zip`` in C; others fall back to one ``dict.get`` per cell."""
    try:
        return list(zip(*map(operator.itemgetter(*names), rows))) or [[] for _ in names]
    except KeyError:
        return [[row.get(name) for row in rows] for name in names]


def _coerced(values: list, field: pa.Field) -> pa.Array:
    coerce = _coercer(field.type)
    out = [None if v is None else coerce(v) for v in values]
    lost = sum(1 for v, c in zip(values, out) if v is not None and c is None)
    if lost:
        log.warning("result column %s: %d value(s) did not fit %s and were stored as null", field.name, lost, field.type)
    return pa.array(out, type=field.type)


def _coercer(type_: pa.DataType) -> Callable[[Any], Any]:
    if pa.types.is_integer(type_):
        bits = type_.bit_width - 1
        return lambda v: _integer(v, -(2**bits), 2**bits - 1)
    if pa.types.is_floating(type_):
        return _float
    if pa.types.is_string(type_):
        return lambda v: v if isinstance(v, str) else json.dumps(v, default=str) if isinstance(v, (dict, list, tuple)) else str(v)
    if pa.types.is_timestamp(type_):
        return _timestamp
    if pa.types.is_map(type_):
        return lambda v: {str(k): _float(x) for k, x in v.items()} if isinstance(v, dict) else None
    return lambda v: None


def _integer(value, lo: int, hi: int) -> int | None:
    try:
        number = operator.index(value)  # int, bool, numpy integers: exact
    except TypeError:
        number = _float(value)
        if number is None or not math.isfinite(number) or number != int(number):
            return None
        number = int(number)
    return number if lo <= number <= hi else None


def _float(value) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _timestamp(value) -> dt.datetime | None:
    if isinstance(value, dt.datetime):
        return value if value.tzinfo else value.replace(tzinfo=dt.timezone.utc)
    number = _float(value)
    return None if number is None or not math.isfinite(number) else dt.datetime.fromtimestamp(number, dt.timezone.utc)
