"""The latest row of each group, on pyarrow's hash group-by: one implementation for the store
(one row per step, one row per trial) and the analysis (one row per step of a trial).

A retried or resumed trial reports some steps again under a higher ``attempt``; the row of
the latest attempt (then the latest timestamp, then the later row) wins. The winner of each
group is found the way one would by hand in pyarrow: ``group_by(keys).aggregate(max)``,
then a join back on the keys keeps the rows that reach the maximum. Two things keep that
to one pass in the common case:

- ranking columns are packed into one int64 (``attempt`` and ``step`` have small spans),
  so several ranks cost one aggregation; the final tie-break (the timestamp) is only
  looked at when ties remain, and the last stage carries the row number too: its maximum
  then *is* the winning row, with no join;
- when the first aggregation finds as many groups as rows, nothing is a duplicate and the
  table comes back untouched.

Nulls rank below every value and group with each other, as in the rest of the store.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

KEY = ("experiment", "trial_id", "step")
TRIAL = ("experiment", "trial_id")
PACK_LIMIT = 2**62  # packed ranks stay below this (int64 with room for the +1 of spans)
_INDEX = "__row"
_RANK = "__rank"


def deduplicate(table: pa.Table) -> pa.Table:
    """One row per (experiment, trial_id, step): the latest attempt, then the latest timestamp.

    Rows keep their order; a table with no duplicates is returned unchanged. A table without
    an ``experiment`` column is treated as one experiment.
    """
    return keep_latest(table, KEY, ("attempt", "timestamp"))


def latest_rows(table: pa.Table) -> pa.Table:
    """The latest row of each trial: the highest step of its latest attempt.

    Ordering by attempt first matters: a retry that restarts from an earlier checkpoint,
    or fails before reporting, is the trial's current state even at a lower step. An error
    row without a step ranks below every step of its attempt. Rows keep their order.
    """
    return keep_latest(table, TRIAL, ("attempt", "step", "timestamp"))


def keep_latest(table: pa.Table, keys: Sequence[str], ranks: Sequence[str]) -> pa.Table:
    """``table`` reduced to the latest row of each ``keys`` group (see :func:`latest_indices`),
    rows in their original order; the same table object when every row is its own group."""
    rows = latest_indices(table, keys, ranks)
    return table if rows is None else table.take(rows)


def latest_indices(table: pa.Table, keys: Sequence[str], ranks: Sequence[str]) -> pa.Array | None:
    """Ascending row numbers of each group's winner: the row with the greatest ``ranks``
    (compared in order, null lowest), ties going to the later row. Key or rank columns the
    table lacks are left out (a missing key is one group, a missing rank a tie). None when
    every row is its own group, so callers can keep the table as it is."""
    n = table.num_rows
    if n < 2:
        return None
    names = table.column_names
    keys = [k for k in keys if k in names]
    work = pa.table({**{k: _joinable(table.column(k)) for k in keys}, _INDEX: pa.array(np.arange(n, dtype=np.int64))})
    for number, (values, with_row) in enumerate(_stages(table, [r for r in ranks if r in names], n)):
        if number:  # later stages rank only the rows still in the running
            values = values.take(work[_INDEX])
        work = work.append_column(_RANK, _with_row(values, work[_INDEX], n) if with_row else values)
        top = _group_max(work, keys)
        if number == 0 and top.num_rows == n:
            return None  # every row is its own group
        if with_row:  # the packed maximum names the winning row
            return pa.array(np.sort(top[_RANK + "_max"].to_numpy() % n))
        if keys:
            work = work.join(top, keys).filter(pc.field(_RANK) == pc.field(_RANK + "_max"))
            work = work.drop_columns([_RANK, _RANK + "_max"])
        else:
            work = work.filter(pc.equal(work[_RANK], top[_RANK + "_max"][0])).drop_columns([_RANK])
        if work.num_rows == top.num_rows:  # one candidate left in every group
            return pa.array(np.sort(work[_INDEX].to_numpy()))
    raise AssertionError("the last stage always carries the row number")  # pragma: no cover


def _group_max(work: pa.Table, keys: list[str]) -> pa.Table:
    if not keys:
        return pa.table({_RANK + "_max": [pc.max(work[_RANK]).as_py()]}, schema=pa.schema([(_RANK + "_max", pa.int64())]))
    return work.group_by(keys).aggregate([(_RANK, "max")])


def _stages(table: pa.Table, ranks: list[str], n: int):
    """Rank columns packed into as few int64 columns as fit, yielded lazily as
    (values, carries_row). The last rank (the final tie-break, e.g. the timestamp) gets a
    stage of its own, computed only when ties remain; the last stage also carries the row
    number (a stage of zeros is added when it has no room for it)."""
    head, tail = ranks[:-1], ranks[-1:]
    packed, span = None, 1
    pending = []
    for name in head:
        values, width = _rank_view(table.column(name))
        if packed is not None and span * width >= PACK_LIMIT:
            pending.append((packed, span))
            packed, span = None, 1
        packed = values if packed is None else pc.add_checked(pc.multiply_checked(packed, width), values)
        span *= width
    if packed is not None:
        pending.append((packed, span))
    for values, _ in pending:
        yield values, False
    if tail:
        values, width = _rank_view(table.column(tail[0]))
        if width * n < PACK_LIMIT:
            yield values, True
            return
        yield values, False
    yield pa.chunked_array([pa.array(np.zeros(n, dtype=np.int64))]), True


def _with_row(values, rows, n: int):
    return pc.add_checked(pc.multiply_checked(values, n), rows)


def _rank_view(column: pa.ChunkedArray) -> tuple[pa.ChunkedArray, int]:
    """A rank column as int64 from 0 (null) up, and its width (distinct slots, null included)."""
    column = _decoded(column)
    if pa.types.is_timestamp(column.type) or pa.types.is_date(column.type):
        column = column.cast(pa.int64())
    if pa.types.is_floating(column.type):  # order-preserving integer codes, null lowest
        ranked = pc.rank(column.combine_chunks(), sort_keys="ascending", null_placement="at_start", tiebreaker="dense")
        column = pc.if_else(pc.is_null(column.combine_chunks()), None, ranked)
    column = pa.chunked_array([column]) if isinstance(column, pa.Array) else column
    column = column.cast(pa.int64())
    low, high = pc.min_max(column).values()
    if not low.is_valid:  # all null: one slot
        return pa.chunked_array([pa.array(np.zeros(len(column), dtype=np.int64))]), 1
    start = low.as_py() - 1  # null -> 0, the lowest value -> 1
    return pc.subtract_checked(pc.fill_null(column, start), start), high.as_py() - start + 1


def _decoded(column: pa.ChunkedArray) -> pa.ChunkedArray:
    return column.cast(column.type.value_type) if pa.types.is_dictionary(column.type) else column


def _joinable(column: pa.ChunkedArray) -> pa.ChunkedArray:
    """A key column a hash join matches exactly: decoded, with nulls replaced by a value no
    other row holds (joins never match nulls; group-by does, so both must agree)."""
    column = _decoded(column)
    if column.null_count == 0:
        return column
    if pa.types.is_integer(column.type):
        low = pc.min(column).as_py()
        if low is None:
            return pa.chunked_array([pa.array(np.zeros(len(column), dtype=np.int64))])
        if low > np.iinfo(np.int64).min:
            return pc.fill_null(column.cast(pa.int64()), low - 1)
    encoded = pc.dictionary_encode(column.combine_chunks(), null_encoding="encode")
    return pa.chunked_array([encoded.indices.cast(pa.int64())])
