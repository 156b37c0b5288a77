"""Where a sweep's state lives, computed in one place from the spec.

Ray's experiment directory is ``<results.path>/_ray/<name>`` unless ``results.storage_path``
says otherwise: pyarrow skips ``_``-prefixed folders, so the Parquet store and Ray's state sit
side by side and ``--resume`` finds its experiment without extra flags. When ``results.path``
is a URI (``s3://bucket/results``) that default is a URI too (``s3://bucket/results/_ray``):
Ray's storage reads and writes through the same pyarrow filesystems.

The Optuna journal needs a local file (Optuna appends to it under a file lock). It sits in
the experiment directory when that is local; otherwise on the driver, beside a local
``results.path`` or, when that is a URI too, under ``~/.cache/lorasweep/studies``; a copy
then travels to ``<experiment directory>/optuna.journal`` at every experiment snapshot and
comes back before a run or ``--resume`` opens the study (:func:`study_backup`,
``orchestrator.store.journal``). Pure Python: no Ray.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

STUDY_FILE = "optuna.journal"
STUDY_CACHE = Path("~/.cache/lorasweep/studies")


def _uri(text: str) -> bool:
    head, sep, _ = text.partition("://")
    return bool(sep) and head.lower() != "file" and head.replace("+", "").replace(".", "").replace("-", "").isalnum()


def _local(text: str) -> Path:
    """A plain path, or the path of a ``file://`` URI, made absolute."""
    if text.lower().startswith("file://"):
        text = text[len("file://"):]
    return Path(text).expanduser().resolve()


def results_location(spec) -> str:
    """``results.path`` as an absolute path or a URI: what summaries and messages show."""
    path = spec.results.path
    return path.rstrip("/") if _uri(path) else str(_local(path))


def storage_path(spec) -> str:
    """Tune's ``storage_path``: the folder (or URI) holding every experiment of this store."""
    if spec.results.storage_path:
        given = spec.results.storage_path
        return given if _uri(given) else str(_local(given))
    return f"{results_location(spec)}/_ray"


def experiment_dir(spec) -> str:
    """Ray's experiment directory (or URI) for this sweep."""
    return f"{storage_path(spec).rstrip('/')}/{spec.name}"


def study_file(spec) -> Path:
    """The Optuna journal this sweep's study lives in (always a local file)."""
    directory = experiment_dir(spec)
    if not _uri(directory):
        return Path(directory) / STUDY_FILE
    if not _uri(spec.results.path):
        return _local(spec.results.path) / "_ray" / spec.name / STUDY_FILE
    digest = hashlib.sha256(directory.encode()).hexdigest()[:16]
    return STUDY_CACHE.expanduser() / f"{spec.name}-{digest}" / STUDY_FILE


def study_backup(spec) -> str | None:
    """Where the journal's copy lives when Ray's experiment directory is a URI (else None:
    the journal is already in the experiment directory)."""
    directory = experiment_dir(spec)
    return f"{directory}/{STUDY_FILE}" if _uri(directory) else None


def study_name(spec) -> str:
    return spec.search.study_name or spec.name


def lock_directory(spec) -> Path:
    """Where the experiment's lock lives: beside Ray's state in a local store, else in the
    driver's cache (an object store has no locks; one driver submits a sweep)."""
    if "://" in spec.results.path and not spec.results.path.startswith("file://"):
        import hashlib
        import os

        cache = Path(os.environ.get("LORASWEEP_CACHE", Path.home() / ".cache" / "lorasweep"))
        return cache / "locks" / hashlib.sha256(spec.results.path.encode()).hexdigest()[:16]
    return Path(spec.results.path.removeprefix("file://")).resolve() / "_ray"
