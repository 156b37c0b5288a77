"""Reading results: a pyarrow dataset over the hive-partitioned store, deduplicated on demand.

A retried trial may have reported the same step twice; the row of the latest attempt
(then the latest timestamp) wins wherever rows are read as results.
"""
from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds

from orchestrator.errors import UsageError
from orchestrator.store.schema import SCHEMA

KEY = ["experiment", "trial_id", "step"]


def dataset_schema() -> pa.Schema:
    return SCHEMA.insert(0, pa.field("experiment", pa.string()))


def open_results(path: str | Path) -> ds.Dataset:
    """The result store at ``path`` as a dataset with hive partitioning and the full schema."""
    path = Path(path)
    if not path.is_dir():
        raise UsageError(f"{path}: no result store here (expected a directory of experiment=<name>/ folders)")
    partitioning = ds.partitioning(pa.schema([pa.field("experiment", pa.string())]), flavor="hive")
    return ds.dataset(path, format="parquet", partitioning=partitioning, schema=dataset_schema())


def deduplicate(table: pa.Table) -> pa.Table:
    """One row per (experiment, trial_id, step): the latest attempt, then the latest timestamp."""
    if table.num_rows == 0:
        return table
    ordered = table.append_column("_i", pa.array(range(table.num_rows), pa.int64()))
    ordered = ordered.sort_by([(k, "ascending") for k in KEY] + [("attempt", "descending"), ("timestamp", "descending")])
    keys = [ordered.column(k) for k in KEY]
    first = pa.array([True] + [False] * (ordered.num_rows - 1))
    for col in keys:
        prev = pc.fill_null(pc.not_equal(col.slice(1), col.slice(0, ordered.num_rows - 1)), True)
        first = pc.or_(first, pa.concat_arrays([pa.array([True]), prev.combine_chunks()]))
    return ordered.filter(first).drop_columns(["_i"])


def read_results(path: str | Path, *, columns: list[str] | None = None, filter=None) -> pa.Table:
    """All rows (deduplicated), optionally filtered with a pyarrow compute expression."""
    dataset = open_results(path)
    needed = None if columns is None else list(dict.fromkeys(columns + KEY + ["attempt", "timestamp"]))
    table = deduplicate(dataset.to_table(columns=needed, filter=filter))
    return table if columns is None else table.select(columns)


def final_rows(table: pa.Table) -> pa.Table:
    """The last evaluation of each trial (its highest step)."""
    table = deduplicate(table)
    if table.num_rows == 0:
        return table
    ordered = table.sort_by([("experiment", "ascending"), ("trial_id", "ascending"), ("step", "descending")])
    exp, trial = ordered.column("experiment"), ordered.column("trial_id")
    n = ordered.num_rows
    changed = pc.or_(
        pc.fill_null(pc.not_equal(exp.slice(1), exp.slice(0, n - 1)), True),
        pc.fill_null(pc.not_equal(trial.slice(1), trial.slice(0, n - 1)), True),
    )
    first = pa.concat_arrays([pa.array([True]), changed.combine_chunks()])
    return ordered.filter(first)
