"""Reading results: a pyarrow dataset over the hive-partitioned store, and the row selections
analysis needs (every step deduplicated, each trial's latest row, completed trials' results).

Opening checks every file's footer once (pyarrow keeps the footers it read, so the scan does
not read them again): a truncated or foreign file, or one written by a newer lorasweep, is
named in a :class:`~orchestrator.errors.UsageError` instead of failing mid-scan with a
traceback, or skipped on request.
"""
from __future__ import annotations

import re
import warnings
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds

from orchestrator.errors import UsageError
from orchestrator.store.latest import KEY, deduplicate, latest_rows
from orchestrator.store.files import BadFile, metadata_problem, store_paths, unreadable_reason
from orchestrator.store.location import Location, locate
from orchestrator.store.schema import PARTITION, dataset_schema

__all__ = [
    "completed_results", "deduplicate", "final_rows", "latest_rows", "open_files", "open_results", "open_store",
    "read_results", "stored_attempts",
]


def partitioning() -> ds.Partitioning:
    return ds.partitioning(pa.schema([PARTITION]), flavor="hive")


def open_store(
    path: str | Path | Location, *, skip_bad: bool = False, filter: pc.Expression | None = None, experiment: str | None = None
) -> tuple[ds.Dataset, list[BadFile]]:
    """The store at ``path`` (a directory or URI; or one ``experiment``) as a dataset of its readable files, and the files left out.

    ``filter`` limits the files checked and kept to those whose partition may match it (rows
    are not filtered). With ``skip_bad`` false, any bad file raises a UsageError naming each.
    """
    root = existing_store(path)
    return open_files(root, store_paths(root, experiment), skip_bad=skip_bad, filter=filter)


def existing_store(path: str | Path | Location) -> Location:
    """The store's location, or a UsageError when nothing is there."""
    root = path if isinstance(path, Location) else locate(path)
    if not root.is_dir():
        raise UsageError(f"{root.uri}: no result store here (expected a directory of experiment=<name>/ folders)")
    return root


def open_files(
    root: Location, files: list[str], *, skip_bad: bool = False, filter: pc.Expression | None = None
) -> tuple[ds.Dataset, list[BadFile]]:
    """These files (filesystem paths) of the store at ``root`` as a dataset, each footer
    checked (see open_store)."""
    dataset = ds.dataset(
        [str(p) for p in files], format="parquet", partitioning=partitioning(), filesystem=root.filesystem,
        partition_base_dir=root.path, schema=dataset_schema(),
    )
    good, bad = [], []
    for fragment in dataset.get_fragments() if filter is None else dataset.get_fragments(filter=filter):
        try:
            fragment.ensure_complete_metadata()
            problem = metadata_problem(fragment.metadata.metadata)
        except (pa.ArrowException, OSError) as exc:
            problem = unreadable_reason(exc)
        if problem is None:
            good.append(fragment)
        else:
            bad.append(BadFile(root.name_of(fragment.path), problem))
    if bad and not skip_bad:
        raise UsageError([str(b) for b in bad] + [
            f"{len(bad)} unusable file(s) in {root.uri}; move them away (then every command reads the rest), "
            "or, to read past them, lorasweep query --skip-bad or open_results(path, skip_bad=True) in Python"
        ])
    if bad or filter is not None:
        dataset = ds.FileSystemDataset(good, dataset_schema(), ds.ParquetFileFormat(), dataset.filesystem)
    return dataset, bad


_COMPACTED = re.compile(r"^part-(.+)-compact-\d{4}\.parquet$")


def one_row_per_step(dataset: ds.Dataset) -> bool:
    """True when every partition's files are the output of one compaction (same stamp):
    compaction writes one row per (trial_id, step), so there is nothing to deduplicate and
    readers can skip that pass. Any other file (a later flush, a second compaction's
    leftovers) makes this False."""
    stamps: dict[str, set[str]] = {}
    for path in getattr(dataset, "files", None) or []:
        directory, _, name = path.rpartition("/")
        match = _COMPACTED.match(name)
        if match is None:
            return False
        stamps.setdefault(directory, set()).add(match.group(1))
    return bool(stamps) and all(len(found) == 1 for found in stamps.values())


def open_results(path: str | Path, *, skip_bad: bool = False) -> ds.Dataset:
    """The result store at ``path`` as a dataset with hive partitioning and the full schema.

    Plain pyarrow reads the same store with
    ``pyarrow.dataset.dataset(path, partitioning="hive")``; this adds the declared schema
    (columns missing from old files read as null) and the file checks.
    """
    dataset, bad = open_store(path, skip_bad=skip_bad)
    if bad:
        warnings.warn("skipped unusable result files: " + "; ".join(map(str, bad)), stacklevel=2)
    return dataset


def scan(dataset: ds.Dataset, *, columns: list[str] | None = None, filter: pc.Expression | None = None) -> pa.Table:
    """``dataset.to_table`` with a file that breaks mid-scan reported as a UsageError."""
    try:
        return dataset.to_table(columns=columns, filter=filter)
    except (pa.ArrowException, OSError) as exc:
        culprit = _failing_file(dataset, columns, filter)
        where = f"{culprit}: " if culprit else ""
        raise UsageError(f"cannot read the result store: {where}{' '.join(str(exc).split())[:400]}") from exc


def _failing_file(dataset: ds.Dataset, columns, filter) -> str | None:
    """The first file that fails on its own (a column of another type, say): scanned only
    once a whole scan has failed, to name the file in the message."""
    for fragment in dataset.get_fragments():
        try:
            fragment.to_table(schema=dataset.schema, columns=columns, filter=filter)
        except (pa.ArrowException, OSError):
            return getattr(fragment, "path", None)
    return None


def read_results(path: str | Path, *, columns: list[str] | None = None, filter=None) -> pa.Table:
    """All rows, one per (experiment, trial_id, step), optionally filtered.

    ``filter`` (a pyarrow compute expression) is applied while scanning, before
    deduplication: filter on configuration columns (experiment, model, rank, ...; see
    ``TRIAL_COLUMNS``) or on ``step``. For a filter on per-row values such as status or
    metrics, use :func:`orchestrator.store.query.query`, which deduplicates first.
    """
    dataset = open_results(path)
    needed = None if columns is None else list(dict.fromkeys(list(columns) + list(KEY) + ["attempt", "timestamp"]))
    table = deduplicate(scan(dataset, columns=needed, filter=filter))
    return table if columns is None else table.select(columns)


def final_rows(table: pa.Table) -> pa.Table:
    """Each trial's latest row (kept under this name for existing callers; see :func:`latest_rows`)."""
    return latest_rows(table)


def completed_results(table: pa.Table) -> pa.Table:
    """Final results: the latest row of each trial whose latest row says ``completed``."""
    latest = latest_rows(table)
    return latest.filter(pc.field("status") == "completed")


def stored_attempts(root: str | Path, experiment: str) -> dict[str, int]:
    """The highest stored attempt of each trial of one experiment (unusable files skipped).

    Reads two columns of one partition: cheap enough to run once per driver start.
    """
    location = locate(root)
    if not location.is_dir():
        return {}
    dataset, _ = open_store(location, skip_bad=True, experiment=experiment)
    table = scan(dataset, columns=["trial_id", "attempt"])
    if table.num_rows == 0:
        return {}
    best = table.group_by("trial_id").aggregate([("attempt", "max")])
    return {t: a for t, a in zip(best["trial_id"].to_pylist(), best["attempt_max"].to_pylist()) if t and a}
