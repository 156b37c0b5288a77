"""Buffered Parquet writer: rows in, whole files out, never a half-written file visible.

Rows are buffered and flushed every ``flush_rows`` rows or ``flush_seconds`` seconds (and
on :meth:`close`). A flush writes ``.tmp-<name>`` (hidden from pyarrow datasets, which
skip names starting with ``.``) and renames it into ``experiment=<name>/`` in one step.
"""
from __future__ import annotations

import os
import time
import uuid
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from orchestrator.store.schema import (
    META_PACKAGE_VERSION,
    META_SCHEMA_VERSION,
    SCHEMA,
    SCHEMA_VERSION,
)


def package_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("lorasweep")
    except PackageNotFoundError:
        return "unknown"


def _schema_with_metadata() -> pa.Schema:
    return SCHEMA.with_metadata(
        {META_SCHEMA_VERSION: str(SCHEMA_VERSION).encode(), META_PACKAGE_VERSION: package_version().encode()}
    )


class ResultWriter:
    """Append rows for one experiment; each flush lands as one new Parquet file."""

    def __init__(self, root: str | Path, experiment: str, *, flush_rows: int = 256, flush_seconds: float = 10.0):
        self.directory = Path(root) / f"experiment={experiment}"
        self.flush_rows = flush_rows
        self.flush_seconds = flush_seconds
        self._rows: list[dict] = []
        self._last_flush = time.monotonic()
        self._schema = _schema_with_metadata()
        self.files_written = 0

    def append(self, row: dict) -> None:
        self._rows.append(row)
        if len(self._rows) >= self.flush_rows or time.monotonic() - self._last_flush >= self.flush_seconds:
            self.flush()

    def extend(self, rows: list[dict]) -> None:
        for row in rows:
            self.append(row)

    def flush(self) -> Path | None:
        """Write buffered rows as one file; return its path (None when nothing was buffered)."""
        self._last_flush = time.monotonic()
        if not self._rows:
            return None
        table = pa.Table.from_pylist(
            [{name: row.get(name) for name in self._schema.names} for row in self._rows], schema=self._schema
        )
        path = self._write_atomically(table)
        self._rows = []
        return path

    def _write_atomically(self, table: pa.Table) -> Path:
        self.directory.mkdir(parents=True, exist_ok=True)
        name = f"part-{time.time_ns():020d}-{uuid.uuid4().hex[:8]}.parquet"
        tmp = self.directory / f".tmp-{name}"
        final = self.directory / name
        try:
            pq.write_table(table, tmp)
            os.replace(tmp, final)
        finally:
            if tmp.exists():
                tmp.unlink()
        self.files_written += 1
        return final

    def close(self) -> None:
        self.flush()
