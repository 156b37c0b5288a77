"""One row per (experiment, trial_id, step), and one row per trial, without Python loops.

A retried or resumed trial reports some steps again under a higher ``attempt``; the row of
the latest attempt (then the latest timestamp) wins. Rows are grouped through integer codes:
each key column is encoded (an offset for integers, else a hash pass in Arrow) and the codes
are combined column by column, renumbered densely after each step (by counting, or by
hashing when the combined range is large). Each group's winner is then found by per-group
maxima (``np.maximum.at``), one ranking key at a time, in linear time with no sort. When
every code is distinct the table comes back as it was.
"""
from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

KEY = ("experiment", "trial_id", "step")
TRIAL = ("experiment", "trial_id")


def deduplicate(table: pa.Table) -> pa.Table:
    """One row per (experiment, trial_id, step): the latest attempt, then the latest timestamp.

    Rows keep their order; a table with no duplicates is returned unchanged. A table without
    an ``experiment`` column is treated as one experiment.
    """
    if table.num_rows < 2:
        return table
    codes, size = group_codes(table, KEY)
    if size == table.num_rows:
        return table
    return table.take(_winners(codes, size, [_int64(table, "attempt"), _int64(table, "timestamp")]))


def latest_rows(table: pa.Table) -> pa.Table:
    """The latest row of each trial: the highest step of its latest attempt.

    Ordering by attempt first matters: a retry that restarts from an earlier checkpoint,
    or fails before reporting, is the trial's current state even at a lower step. An error
    row without a step ranks below every step of its attempt. Rows keep their order.
    """
    if table.num_rows < 2:
        return table
    codes, size = group_codes(table, TRIAL)
    if size == table.num_rows:
        return table
    keys = [_int64(table, "attempt"), _int64(table, "step"), _int64(table, "timestamp")]
    return table.take(_winners(codes, size, keys))


def group_codes(table: pa.Table, columns: tuple[str, ...]) -> tuple[np.ndarray, int]:
    """Dense codes ``0..size-1``, equal exactly when rows agree on ``columns`` (nulls equal
    to each other), and ``size``, the number of distinct combinations."""
    n = table.num_rows
    codes, size = np.zeros(n, dtype=np.int64), 1
    for name in columns:
        if name not in table.column_names:
            continue
        column_codes, column_size = _encode(table.column(name))
        if column_size > 1:
            codes, size = _dense(codes * column_size + column_codes, size * column_size)
    return codes, size


def _encode(values: pa.ChunkedArray | pa.Array) -> tuple[np.ndarray, int]:
    """Dense codes for the distinct values of one column (null gets its own), and their count.

    Integers spanning a small range are offset rather than hashed; a column holding one
    value is recognised without hashing; anything else is dictionary-encoded by Arrow.
    """
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    if pa.types.is_dictionary(values.type):
        values = values.cast(values.type.value_type)
    if pa.types.is_integer(values.type):
        low, high = pc.min_max(values).values()
        if low.is_valid and high.as_py() - low.as_py() + 2 <= _limit(len(values)):
            start = low.as_py() - 1  # null -> code 0
            shifted = pc.fill_null(values.cast(pa.int64()), start).to_numpy() - start
            return _dense(shifted, high.as_py() - start + 1)
    elif values.null_count == 0 and len(values) and pc.all(pc.equal(values, values[0])).as_py():
        return np.zeros(len(values), dtype=np.int64), 1
    encoded = pc.dictionary_encode(values, null_encoding="encode")
    return encoded.indices.to_numpy(zero_copy_only=False).astype(np.int64, copy=False), len(encoded.dictionary)


def _dense(codes: np.ndarray, size: int) -> tuple[np.ndarray, int]:
    """Renumber codes below ``size`` to ``0..distinct-1``: by counting when ``size`` is a
    few times the row count, else by hashing."""
    if size <= 1:
        return codes, size
    if size > _limit(len(codes)):
        return _encode(pa.array(codes))
    present = np.bincount(codes, minlength=size) > 0
    distinct = int(np.count_nonzero(present))
    if distinct == size:
        return codes, size
    return (np.cumsum(present) - 1)[codes], distinct


def _limit(n: int) -> int:
    return max(8 * n, 16)


def _int64(table: pa.Table, name: str) -> np.ndarray:
    """A sortable int64 view of an integer or timestamp column; null sorts first."""
    if name not in table.column_names:
        return np.zeros(table.num_rows, dtype=np.int64)
    column = table.column(name)
    if pa.types.is_timestamp(column.type):
        column = column.cast(pa.int64())
    column = pc.fill_null(column.cast(pa.int64()), np.iinfo(np.int64).min)
    return column.to_numpy()


def _winners(codes: np.ndarray, groups: int, keys: list[np.ndarray]) -> np.ndarray:
    """Each group's winning row index, ascending: the greatest first key, ties broken by
    the next key, and finally by the later row."""
    candidates = np.arange(len(codes))
    for key in keys:
        best = np.full(groups, np.iinfo(np.int64).min)
        np.maximum.at(best, codes[candidates], key[candidates])
        candidates = candidates[key[candidates] == best[codes[candidates]]]
    winner = np.full(groups, -1, dtype=np.int64)
    np.maximum.at(winner, codes[candidates], candidates)
    return np.sort(winner)
