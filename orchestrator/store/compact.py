"""Compaction: an experiment's many small files rewritten as a few large sorted ones.

A sweep leaves one small file per flush; scanning thousands of them costs more than the rows
in them. Compaction reads an experiment's files, keeps one row per (trial_id, step) (the
latest attempt), sorts by (trial_id, step) so row-group statistics prune by trial, and
replaces the files in three steps:

1. write the new files whole (locally: under hidden temporary names, then renamed into
   place; on an object store: straight to new unique object names);
2. delete the old files it read.

Between steps 1 and 2 a reader sees the old rows and the new ones together: every new row is
a copy of an old row, so lorasweep's readers (which deduplicate) return each row once at any
instant; plain pyarrow sees duplicates only within that window. Files a running sweep adds
while compaction runs are not read and not deleted, so compaction is safe during a sweep;
two compactions of one experiment are kept apart by a lock (:mod:`orchestrator.store.lock`).
"""
from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import pyarrow.fs as pafs

from orchestrator.errors import UsageError
from orchestrator.store.files import experiment_path, file_schema, store_paths, write_whole
from orchestrator.store.latest import deduplicate
from orchestrator.store.location import Location, display, locate
from orchestrator.store.lock import compaction_lock
from orchestrator.store.reader import existing_store, open_files, scan

log = logging.getLogger(__name__)

ROWS_PER_FILE = 1_000_000
ROW_GROUP_ROWS = 64 * 1024
STALE_TEMPORARY_S = 3600.0  # a .tmp- file this old was left by a writer that died


@dataclass
class Compaction:
    experiment: str
    files_before: int
    rows_before: int
    files_after: int
    rows_after: int
    skipped: bool = False  # already one compacted file

    def __str__(self) -> str:
        if self.skipped:
            return f"experiment={self.experiment}: already compact ({_count(self.files_before, 'file')}, {_count(self.rows_after, 'row')})"
        dropped = self.rows_before - self.rows_after
        return (
            f"experiment={self.experiment}: {_count(self.files_before, 'file')}, {_count(self.rows_before, 'row')} -> "
            f"{_count(self.files_after, 'file')}, {_count(self.rows_after, 'row')}"
            + (f" ({_count(dropped, 'superseded row')} dropped)" if dropped else "")
        )


def _count(n: int, noun: str) -> str:
    return f"{n:,} {noun}{'' if n == 1 else 's'}"


def experiments(root: str | Path | Location) -> list[str]:
    """Experiment names with a partition folder under ``root`` (a directory or URI)."""
    location = existing_store(root)
    selector = pafs.FileSelector(location.path, allow_not_found=True)
    names = [info.base_name for info in location.filesystem.get_file_info(selector) if info.type == pafs.FileType.Directory]
    return sorted(name.split("=", 1)[1] for name in names if name.startswith("experiment="))


def compact(
    root: str | Path, experiment: str | None = None, *, rows_per_file: int = ROWS_PER_FILE
) -> list[Compaction]:
    """Compact one experiment, or every experiment under ``root``."""
    location = existing_store(root)
    names = experiments(location)
    if experiment is not None:
        if experiment not in names:
            raise UsageError(f"--experiment: no experiment {experiment!r} in {location.uri}; experiments: {', '.join(names) or 'none'}")
        names = [experiment]
    return [compact_experiment(location, name, rows_per_file=rows_per_file) for name in names]


def compact_experiment(root: str | Path | Location, experiment: str, *, rows_per_file: int = ROWS_PER_FILE) -> Compaction:
    location = root if isinstance(root, Location) else locate(root)
    directory = experiment_path(location, experiment)
    with compaction_lock(location, directory, experiment):
        return _compact_locked(location, experiment, directory, rows_per_file)


def _compact_locked(location: Location, experiment: str, directory: str, rows_per_file: int) -> Compaction:
    _remove_stale_temporaries(location, directory)
    old = store_paths(location, experiment)  # files a sweep adds from now on are left alone
    dataset, _ = open_files(location, old)  # a bad file stops compaction, named
    if not old or (len(old) == 1 and "-compact-" in old[0].rsplit("/", 1)[-1]):
        rows = dataset.count_rows()
        return Compaction(experiment, len(old), rows, len(old), rows, skipped=True)
    table = scan(dataset)
    rows_before = table.num_rows
    table = deduplicate(table.drop_columns(["experiment"]))
    table = table.sort_by([("trial_id", "ascending"), ("step", "ascending"), ("attempt", "ascending")])
    table = table.cast(file_schema())
    stamp = f"{time.time_ns():020d}-{uuid.uuid4().hex[:8]}"
    new = []
    for i, start in enumerate(range(0, max(table.num_rows, 1), rows_per_file)):
        chunk = table.slice(start, rows_per_file)
        name = f"part-{stamp}-compact-{i:04d}.parquet"
        new.append(write_whole(chunk, location, directory, name, row_group_size=ROW_GROUP_ROWS))
    for path in old:
        if path not in new:
            _delete(location, path)
    return Compaction(experiment, len(old), rows_before, len(new), table.num_rows)


def _delete(location: Location, path: str) -> None:
    try:
        location.filesystem.delete_file(path)
    except FileNotFoundError:
        pass


def _remove_stale_temporaries(location: Location, directory: str) -> None:
    """Delete ``.tmp-`` files a writer that died left behind (older than an hour)."""
    cutoff = time.time() - STALE_TEMPORARY_S
    selector = pafs.FileSelector(directory, allow_not_found=True)
    for info in location.filesystem.get_file_info(selector):
        if info.base_name.startswith(".tmp-") and info.mtime is not None and info.mtime.timestamp() < cutoff:
            try:
                location.filesystem.delete_file(info.path)
            except OSError:
                pass


def finalize_experiment(results_path: str | Path, experiment: str) -> Compaction | None:
    """Compact one experiment at the end of a run (and before a resumed one), so that plain
    ``pyarrow.dataset.dataset(path)`` sees exactly one row per (trial_id, step).

    A run must not fail over tidying up: when compaction cannot run (another one holds the
    lock, a file is unreadable, the storage is unreachable) the problem is logged with the
    command that finishes the job, and the rows stay readable, deduplicated, by lorasweep.
    """
    try:
        location = locate(results_path)
        if not location.is_dir(experiment_path(location, experiment)):
            return None
        return compact_experiment(location, experiment)
    except (UsageError, OSError) as exc:
        problem = "; ".join(exc.problems) if isinstance(exc, UsageError) else str(exc)
        log.warning("result store %s: experiment %s not compacted (%s); run: lorasweep compact %s --experiment %s",
                    display(results_path), experiment, problem, display(results_path), experiment)
        return None
