"""A query over the store: filter, deduplicate, optionally keep each trial's latest row.

The filter runs on deduplicated rows, so a retried trial's superseded row never matches.
To keep pyarrow's pruning, the part of the filter that cannot change the deduplication
(conjuncts on configuration columns, and on ``step`` when all steps are kept) is pushed into
the scan; the rest is applied in memory afterwards. With ``latest``, each trial's latest
row is chosen first and the filter then tests it (``--latest --where "status ==
'completed'"`` is the completed trials' final results).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa

from orchestrator.errors import UsageError
from orchestrator.store.latest import KEY, deduplicate, latest_rows
from orchestrator.store.files import BadFile
from orchestrator.store.reader import one_row_per_step, open_store, scan
from orchestrator.store.schema import TRIAL_COLUMNS, dataset_schema
from orchestrator.store.where import parse_where


@dataclass
class QueryResult:
    table: pa.Table
    skipped: list[BadFile] = field(default_factory=list)


def check_columns(columns: list[str] | None) -> list[str]:
    """The requested columns, or all of them; unknown names are one UsageError line."""
    names = dataset_schema().names
    if not columns:
        return list(names)
    unknown = [c for c in columns if c not in names]
    if unknown:
        raise UsageError(f"--columns: unknown column(s) {', '.join(map(repr, unknown))}; columns: {', '.join(names)}")
    return list(dict.fromkeys(columns))


def query(
    path: str | Path,
    *,
    where: str | None = None,
    columns: list[str] | None = None,
    latest: bool = False,
    skip_bad: bool = False,
) -> QueryResult:
    """Rows of the store at ``path`` matching ``where`` (the ``--where`` language)."""
    columns = check_columns(columns)
    pushed = residual = None
    read = set()
    if where and where.strip():
        parsed = parse_where(where, dataset_schema())
        pushed, residual = parsed.split(TRIAL_COLUMNS if latest else TRIAL_COLUMNS | {"step"})
        read = parsed.columns if residual is not None else set()
    dataset, skipped = open_store(path, skip_bad=skip_bad, filter=pushed)
    needed = list(dict.fromkeys(columns + [*KEY, "attempt", "timestamp"] + sorted(read)))
    table = scan(dataset, columns=needed, filter=pushed)
    if latest:
        table = latest_rows(table)
    elif not one_row_per_step(dataset):  # a freshly compacted store has nothing to deduplicate
        table = deduplicate(table)
    if residual is not None:
        table = table.filter(residual)
    return QueryResult(table.select(columns), skipped)
