"""The one latest-row selection (orchestrator.store.latest) against a plain-Python reference,
on every path it takes: ranks packed with the row number (one group-by), and ranks too wide
to pack (group-by + join rounds), with null keys and null ranks."""
from __future__ import annotations

import datetime as dt
from unittest import mock

import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import orchestrator.store.latest as latest
from orchestrator.analysis.select import _latest_attempt

T0 = dt.datetime(2025, 1, 1, tzinfo=dt.timezone.utc)

_rows = st.lists(
    st.tuples(st.sampled_from(["a", "b"]), st.none() | st.sampled_from(["t1", "t2", "t3"]), st.none() | st.integers(0, 3),
              st.none() | st.integers(1, 3), st.integers(0, 5)),
    max_size=40,
)


def _table(rows) -> pa.Table:
    return pa.table({
        "experiment": pa.array([r[0] for r in rows], pa.string()).dictionary_encode(),
        "trial_id": pa.array([r[1] for r in rows], pa.string()),
        "step": pa.array([r[2] for r in rows], pa.int64()), "attempt": pa.array([r[3] for r in rows], pa.int32()),
        "timestamp": pa.array([T0 + dt.timedelta(seconds=r[4]) for r in rows], pa.timestamp("us", tz="UTC")),
    })


def _reference(rows, key, rank) -> list[int]:
    """Each group's winner: greatest rank (None lowest), ties to the later row; ascending."""
    best: dict = {}
    for i, r in enumerate(rows):
        k = key(r)
        if k not in best or rank(r) >= rank(rows[best[k]]):
            best[k] = i
    return sorted(best.values())


def _low(v):
    return -1 if v is None else v


@pytest.mark.parametrize("limit", [2**62, 64, 2], ids=["packed", "partly-packed", "join-rounds"])
@settings(max_examples=120, deadline=None)
@given(rows=_rows)
def test_latest_indices_match_the_reference_on_every_path(limit, rows):
    table = _table(rows)
    with mock.patch.object(latest, "PACK_LIMIT", limit):
        by_step = latest.latest_indices(table, latest.KEY, ("attempt", "timestamp"))
        by_trial = latest.latest_indices(table, latest.TRIAL, ("attempt", "step", "timestamp"))
    everything = list(range(len(rows)))
    step_ref = _reference(rows, lambda r: r[:3], lambda r: (_low(r[3]), r[4]))
    trial_ref = _reference(rows, lambda r: r[:2], lambda r: (_low(r[3]), _low(r[2]), r[4]))
    assert (everything if by_step is None else by_step.to_pylist()) == step_ref
    assert (everything if by_trial is None else by_trial.to_pylist()) == trial_ref


def test_a_table_without_duplicates_comes_back_as_the_same_object():
    table = _table([("a", "t1", 1, 1, 0), ("a", "t1", 2, 1, 1), ("a", "t2", 1, 1, 2)])
    assert latest.deduplicate(table) is table
    assert latest.latest_rows(table).column("step").to_pylist() == [2, 1]


def test_analysis_keeps_the_latest_attempt_per_step_through_the_same_selection():
    import numpy as np

    table = pa.table({"attempt": pa.array([1, 1, 2, None, 2], pa.int32()), "eval_ce": [1.0, 2.0, 3.0, 4.0, 5.0]})
    trial = np.array([0, 0, 0, 1, 1])
    step = np.array([10.0, 20.0, 20.0, 10.0, 10.0])
    kept, kept_trial, kept_step = _latest_attempt(table, trial, step)
    assert kept["eval_ce"].to_pylist() == [1.0, 3.0, 5.0]
    assert kept_trial.tolist() == [0, 0, 1] and kept_step.tolist() == [10.0, 20.0, 10.0]


def test_query_skips_deduplication_only_for_the_output_of_one_compaction(tmp_path):
    import shutil

    from orchestrator.store import ResultWriter
    from orchestrator.store.compact import compact
    from orchestrator.store.files import store_files
    from orchestrator.store.query import query
    from orchestrator.store.reader import one_row_per_step, open_store

    rows = [dict(trial_id="t1", attempt=a, status="running", rank=8, step=s, timestamp=T0 + dt.timedelta(seconds=a * 10 + s))
            for a, steps in ((1, (1, 2)), (2, (2, 3))) for s in steps]
    with ResultWriter(tmp_path, "exp", flush_rows=2, flush_seconds=1e9) as writer:
        writer.extend(rows)
    assert not one_row_per_step(open_store(tmp_path)[0])
    assert query(tmp_path, where="rank == 8").table.num_rows == 3
    compact(tmp_path)
    assert one_row_per_step(open_store(tmp_path)[0])
    assert sorted(query(tmp_path, where="rank == 8").table["step"].to_pylist()) == [1, 2, 3]
    (only,) = store_files(tmp_path)
    shutil.copy(only, only.with_name("part-00000000000000000001-abcd0123-compact-0000.parquet"))  # a second stamp
    assert not one_row_per_step(open_store(tmp_path)[0])
    assert sorted(query(tmp_path, where="rank == 8").table["step"].to_pylist()) == [1, 2, 3]
