"""Files of the store: finding them, writing them whole, and telling a readable one from not.

On a local disk a file appears under its final name only by ``os.replace`` of a complete
temporary file whose name starts with ``.`` (skipped by pyarrow datasets and by
:func:`store_files`); on an object store an object appears only when its upload completes.
Either way a reader never meets half a file that a writer is still producing. A file damaged some other way (a
copy cut short, a stray non-Parquet file) is reported by name rather than as a traceback.
"""
from __future__ import annotations

import os
import uuid
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from orchestrator.store.location import Location, locate

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


def experiment_dir(root: str | Path, experiment: str) -> str:
    """The experiment's partition folder: a local path, or a URI under a URI root."""
    location = locate(root)
    return location.name_of(experiment_path(location, experiment))


def experiment_path(location: Location, experiment: str) -> str:
    """The partition folder's path inside the store's filesystem."""
    return location.join(f"experiment={experiment}")


def _visible(relative: str) -> bool:
    parts = relative.split("/")
    return parts[-1].endswith(".parquet") and not any(p.startswith(HIDDEN_PREFIXES) for p in parts)


def store_paths(location: Location, experiment: str | None = None) -> list[str]:
    """Filesystem paths of the visible ``*.parquet`` files under the store (or one experiment).

    Names starting with ``.`` or ``_`` are skipped at every level, as pyarrow does; other
    files (a report, notes) are not part of the store and are left alone. One listing call:
    on an object store that is one paged LIST, not a walk.
    """
    top = location.path if experiment is None else experiment_path(location, experiment)
    selector = pafs.FileSelector(top, recursive=True, allow_not_found=True)
    base = top.rstrip("/") + "/"
    found = [
        info.path for info in location.filesystem.get_file_info(selector)
        if info.type == pafs.FileType.File and _visible(info.path[len(base):] if info.path.startswith(base) else info.path)
    ]
    return sorted(found)


def store_files(root: str | Path, experiment: str | None = None) -> list:
    """The visible Parquet files of the store at ``root``, sorted: ``Path`` objects for a
    local store, URIs for a remote one (see :func:`store_paths`)."""
    location = locate(root)
    paths = store_paths(location, experiment)
    return [Path(p) for p in paths] if location.local else [location.name_of(p) for p in paths]


def write_whole(table: pa.Table, location: Location, directory: str, name: str, **write_options) -> str:
    """Write ``table`` as ``directory/name`` so that no reader ever sees part of it.

    Where rename is atomic (local disks, HDFS), the file is written under a hidden temporary
    name and renamed into place. On an object store the object is written under its final,
    unique name: it becomes visible only once its upload has completed, and no rename (a
    copy and a delete there) is spent.
    """
    final = f"{directory.rstrip('/')}/{name}"
    if not location.renames:
        pq.write_table(table, final, filesystem=location.filesystem, **write_options)
        return final
    if location.local:
        return str(write_atomically(table, Path(directory), name, **write_options))
    location.filesystem.create_dir(directory, recursive=True)
    tmp = f"{directory.rstrip('/')}/.tmp-{uuid.uuid4().hex[:8]}-{name}"
    try:
        pq.write_table(table, tmp, filesystem=location.filesystem, **write_options)
        location.filesystem.move(tmp, final)
    finally:
        if location.exists(tmp):
            location.filesystem.delete_file(tmp)
    return final


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
