"""Files of the store: finding them, writing them whole, and telling a readable one from not.

A file appears under its final name only by ``os.replace`` of a complete temporary file whose
name starts with ``.`` (skipped by pyarrow datasets and by :func:`store_files`), so a reader
never meets half a file that a writer is still producing. A file damaged some other way (a
copy cut short, a stray non-Parquet file) is reported by name rather than as a traceback.
"""
from __future__ import annotations

import os
import uuid
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from orchestrator.store.schema import META_PACKAGE_VERSION, META_SCHEMA_VERSION, SCHEMA, SCHEMA_VERSION

HIDDEN_PREFIXES = (".", "_")  # pyarrow's default ignore_prefixes: temporaries, Ray's _ray/


def package_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("lorasweep")
    except PackageNotFoundError:
        return "unknown"


def file_schema() -> pa.Schema:
    """The schema every written file carries, with the schema and package versions."""
    return SCHEMA.with_metadata(
        {META_SCHEMA_VERSION: str(SCHEMA_VERSION).encode(), META_PACKAGE_VERSION: package_version().encode()}
    )


def experiment_dir(root: str | Path, experiment: str) -> Path:
    return Path(root) / f"experiment={experiment}"


def store_files(root: str | Path, experiment: str | None = None) -> list[Path]:
    """Visible ``*.parquet`` files under ``root`` (or one experiment), sorted by path.

    Names starting with ``.`` or ``_`` are skipped at every level, as pyarrow does; other
    files (a report, notes) are not part of the store and are left alone.
    """
    top = Path(root) if experiment is None else experiment_dir(root, experiment)
    found = []
    for directory, subdirs, names in os.walk(top):
        subdirs[:] = sorted(d for d in subdirs if not d.startswith(HIDDEN_PREFIXES))
        found += [
            Path(directory, n) for n in names if n.endswith(".parquet") and not n.startswith(HIDDEN_PREFIXES)
        ]
    return sorted(found)


def write_atomically(table: pa.Table, directory: Path, name: str, **write_options) -> Path:
    """Write ``table`` to ``directory/name`` via a hidden temporary file and one rename."""
    directory.mkdir(parents=True, exist_ok=True)
    tmp = directory / f".tmp-{uuid.uuid4().hex[:8]}-{name}"
    final = directory / name
    try:
        pq.write_table(table, tmp, **write_options)
        os.replace(tmp, final)
    finally:
        if tmp.exists():
            tmp.unlink()
    return final


@dataclass(frozen=True)
class BadFile:
    """A file the store cannot read, and why, in words for the user."""

    path: str
    reason: str

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}"


def metadata_problem(metadata: dict | None) -> str | None:
    """Why a file with this key-value metadata cannot be read here (None when it can).

    Files without a schema version (written by plain pyarrow) are read as they are.
    """
    raw = (metadata or {}).get(META_SCHEMA_VERSION)
    if raw is None:
        return None
    try:
        version = int(raw)
    except ValueError:
        return f"unrecognised schema version {raw.decode(errors='replace')!r}"
    if version > SCHEMA_VERSION:
        return f"written by a newer lorasweep (schema {version} > {SCHEMA_VERSION}); upgrade lorasweep to read it"
    return None


def unreadable_reason(exc: Exception) -> str:
    """One line from pyarrow's error for a file that did not open as Parquet."""
    detail = " ".join(str(exc).split())
    return f"not a readable Parquet file (truncated or not Parquet): {detail[:240]}"
