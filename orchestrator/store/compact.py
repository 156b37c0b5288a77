"""Compaction: an experiment's many small files rewritten as a few large sorted ones.

A sweep leaves one small file per flush; scanning thousands of them costs more than the rows
in them. Compaction reads an experiment's files, keeps one row per (trial_id, step) (the
latest attempt), sorts by (trial_id, step) so row-group statistics prune by trial, and
replaces the files in three steps:

1. write the new files under hidden temporary names (readers do not see them);
2. rename each into place;
3. delete the old files it read.

Between steps 2 and 3 a reader sees the old rows and the new ones together: every new row is
a copy of an old row, so lorasweep's readers (which deduplicate) return each row once at any
instant; plain pyarrow sees duplicates only within that window. Files a running sweep adds
while compaction runs are not read and not deleted, so compaction is safe during a sweep;
two compactions of one experiment are kept apart by a lock file.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import filelock

from orchestrator.errors import UsageError
from orchestrator.store.dedup import deduplicate
from orchestrator.store.files import experiment_dir, file_schema, store_files, write_atomically
from orchestrator.store.reader import open_files, scan

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


def experiments(root: str | Path) -> list[str]:
    """Experiment names with a partition folder under ``root``."""
    root = Path(root)
    if not root.is_dir():
        raise UsageError(f"{root}: no result store here (expected a directory of experiment=<name>/ folders)")
    return sorted(p.name.split("=", 1)[1] for p in root.glob("experiment=*") if p.is_dir())


def compact(
    root: str | Path, experiment: str | None = None, *, rows_per_file: int = ROWS_PER_FILE
) -> list[Compaction]:
    """Compact one experiment, or every experiment under ``root``."""
    names = experiments(root)
    if experiment is not None:
        if experiment not in names:
            raise UsageError(f"--experiment: no experiment {experiment!r} in {root}; experiments: {', '.join(names) or 'none'}")
        names = [experiment]
    return [compact_experiment(root, name, rows_per_file=rows_per_file) for name in names]


def compact_experiment(root: str | Path, experiment: str, *, rows_per_file: int = ROWS_PER_FILE) -> Compaction:
    directory = experiment_dir(root, experiment)
    lock = filelock.FileLock(str(directory / ".compact.lock"), timeout=0)
    try:
        with lock:
            return _compact_locked(root, experiment, directory, rows_per_file)
    except filelock.Timeout:
        raise UsageError(f"experiment={experiment}: another compaction is running (lock {lock.lock_file})") from None


def _compact_locked(root, experiment: str, directory: Path, rows_per_file: int) -> Compaction:
    _remove_stale_temporaries(directory)
    old = store_files(root, experiment)  # files a sweep adds from now on are left alone
    dataset, _ = open_files(Path(root), old)  # a bad file stops compaction, named
    if not old or (len(old) == 1 and "-compact-" in old[0].name):
        rows = dataset.count_rows()
        return Compaction(experiment, len(old), rows, len(old), rows, skipped=True)
    table = scan(dataset)
    rows_before = table.num_rows
    table = deduplicate(table.drop_columns(["experiment"]))
    table = table.sort_by([("trial_id", "ascending"), ("step", "ascending"), ("attempt", "ascending")])
    table = table.cast(file_schema())
    stamp = f"{time.time_ns():020d}"
    new = []
    for i, start in enumerate(range(0, max(table.num_rows, 1), rows_per_file)):
        chunk = table.slice(start, rows_per_file)
        new.append(write_atomically(chunk, directory, f"part-{stamp}-compact-{i:04d}.parquet", row_group_size=ROW_GROUP_ROWS))
    for path in old:
        if path not in new:
            path.unlink(missing_ok=True)
    return Compaction(experiment, len(old), rows_before, len(new), table.num_rows)


def _remove_stale_temporaries(directory: Path) -> None:
    cutoff = time.time() - STALE_TEMPORARY_S
    for path in directory.glob(".tmp-*"):
        try:
            if path.stat().st_mtime < cutoff:
                path.unlink()
        except OSError:
            pass
