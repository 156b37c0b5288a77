"""Where a sweep's state lives, computed in one place from the spec.

Ray's experiment directory is ``<results.path>/_ray/<name>`` unless ``results.storage_path``
says otherwise: pyarrow skips ``_``-prefixed folders, so the Parquet store and Ray's state sit
side by side and ``--resume`` finds its experiment without extra flags. The Optuna journal
sits in the experiment directory when that is local, else beside the store on the driver
(a journal file needs a local path). Pure Python: no Ray.
"""
from __future__ import annotations

from pathlib import Path

STUDY_FILE = "optuna.journal"


def storage_path(spec) -> str:
    """Tune's ``storage_path``: the folder (or URI) holding every experiment of this store."""
    if spec.results.storage_path:
        return spec.results.storage_path
    return str((Path(spec.results.path) / "_ray").resolve())


def experiment_dir(spec) -> str:
    """Ray's experiment directory (or URI) for this sweep."""
    return f"{storage_path(spec).rstrip('/')}/{spec.name}"


def study_file(spec) -> Path:
    """The Optuna journal this sweep's study lives in."""
    directory = experiment_dir(spec)
    if "://" in directory:
        return Path(spec.results.path).resolve() / "_ray" / spec.name / STUDY_FILE
    return Path(directory) / STUDY_FILE


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
