"""The result store: whole files only, schema metadata, latest attempt wins, compaction, callback."""
from __future__ import annotations

import datetime as dt
import pickle
import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from orchestrator.errors import UsageError
from orchestrator.store import (
    SCHEMA_VERSION,
    ResultWriter,
    completed_results,
    deduplicate,
    final_rows,
    latest_rows,
    open_results,
    read_results,
)
from orchestrator.store import files as store_files_module
from orchestrator.store.compact import compact
from orchestrator.store.files import file_schema, package_version, store_files
from orchestrator.store.schema import COLUMNS, markdown_table
import orchestrator.store.callback as callback_module

ROOT = Path(__file__).resolve().parents[1]
T0 = dt.datetime(2025, 1, 1, tzinfo=dt.timezone.utc)


def row(trial: str, step: int | None, attempt: int = 1, *, second: int = 0, **columns) -> dict:
    base = dict(trial_id=trial, attempt=attempt, status="running", model="zoo/llama-xs", rank=8, scaling="standard",
                step=step, eval_ce=1.0, timestamp=T0 + dt.timedelta(seconds=second))
    base.update(columns)
    return base


def write(root, rows, experiment="exp", flush_rows=1000) -> None:
    with ResultWriter(root, experiment, flush_rows=flush_rows, flush_seconds=1e9) as writer:
        writer.extend(rows)


def keys(table: pa.Table) -> list[tuple]:
    return sorted(zip(table["trial_id"].to_pylist(), table["step"].to_pylist(), table["attempt"].to_pylist()))


# -- files and metadata


def test_written_files_carry_schema_and_package_versions(tmp_path):
    write(tmp_path, [row("t1", 10)])
    (path,) = store_files(tmp_path)
    meta = pq.read_metadata(path).metadata
    assert meta[b"lorasweep.schema_version"] == str(SCHEMA_VERSION).encode()
    assert meta[b"lorasweep.version"] == package_version().encode() != b""
    assert pq.read_schema(path).names == COLUMNS


def test_file_with_newer_schema_version_gets_a_clear_message(tmp_path):
    write(tmp_path, [row("t1", 10)])
    newer = file_schema().with_metadata({b"lorasweep.schema_version": str(SCHEMA_VERSION + 1).encode()})
    directory = tmp_path / "experiment=exp"
    pq.write_table(pa.Table.from_pylist([row("t2", 10)], schema=newer), directory / "part-newer.parquet")
    with pytest.raises(UsageError) as caught:
        open_results(tmp_path)
    message = str(caught.value)
    assert "part-newer.parquet" in message
    assert f"written by a newer lorasweep (schema {SCHEMA_VERSION + 1} > {SCHEMA_VERSION}); upgrade" in message
    with pytest.warns(UserWarning, match="part-newer"):
        assert open_results(tmp_path, skip_bad=True).to_table()["trial_id"].to_pylist() == ["t1"]


def test_flush_interrupted_between_write_and_rename_leaves_only_whole_files(tmp_path, monkeypatch):
    write(tmp_path, [row("t1", 10)])
    writer = ResultWriter(tmp_path, "exp", flush_rows=1000, flush_seconds=1e9)
    writer.append(row("t1", 20))

    def crash(src, dst):
        raise OSError("killed between write and rename")

    monkeypatch.setattr(store_files_module.os, "replace", crash)
    with pytest.raises(OSError, match="killed"):
        writer.flush()
    directory = tmp_path / "experiment=exp"
    assert [p.name.startswith(".") for p in directory.iterdir()].count(True) == 0  # temporary removed
    assert read_results(tmp_path)["step"].to_pylist() == [10]
    monkeypatch.undo()
    writer.flush()  # the row was kept and lands on the next flush
    assert sorted(read_results(tmp_path)["step"].to_pylist()) == [10, 20]


def test_temporary_file_of_a_writer_still_writing_is_invisible(tmp_path):
    write(tmp_path, [row("t1", 10)])
    (tmp_path / "experiment=exp" / ".tmp-abc-part-x.parquet").write_bytes(b"PAR1 half a file")
    assert read_results(tmp_path).num_rows == 1
    assert ds.dataset(tmp_path, partitioning="hive").to_table().num_rows == 1


def test_truncated_file_is_named_and_skip_bad_reads_the_rest(tmp_path):
    write(tmp_path, [row("t1", 10)])
    write(tmp_path, [row("t2", 10)])
    first = store_files(tmp_path)[0]
    cut = first.with_name("part-truncated.parquet")
    cut.write_bytes(first.read_bytes()[: first.stat().st_size // 2])
    with pytest.raises(UsageError) as caught:
        read_results(tmp_path)
    assert str(cut) in str(caught.value) and "truncated or not Parquet" in str(caught.value)
    with pytest.warns(UserWarning, match="part-truncated"):
        assert sorted(open_results(tmp_path, skip_bad=True).to_table()["trial_id"].to_pylist()) == ["t1", "t2"]


def test_writer_coerces_values_that_do_not_fit_their_column(tmp_path, caplog):
    write(tmp_path, [row("t1", np.int64(10), rank=8.0, eval_ce=np.float32(0.5), model={"name": "x"}, seed="x")])
    (got,) = read_results(tmp_path).to_pylist()
    assert (got["step"], got["rank"], got["eval_ce"], got["model"]) == (10, 8, 0.5, '{"name": "x"}')
    assert got["seed"] is None and "seed" in caplog.text


def test_docs_column_table_is_generated_from_the_schema():
    text = (ROOT / "docs" / "results.md").read_text()
    assert markdown_table() in text, "regenerate docs/results.md's table from schema.markdown_table()"


# -- latest attempt wins


def test_retried_trial_keeps_one_row_per_step_from_the_latest_attempt(tmp_path):
    write(tmp_path, [row("t1", s, 1, second=s) for s in (10, 20, 30)] + [row("t2", 10)])
    write(tmp_path, [row("t1", s, 2, second=100 + s) for s in (20, 30, 40)])
    expected = [("t1", 10, 1), ("t1", 20, 2), ("t1", 30, 2), ("t1", 40, 2), ("t2", 10, 1)]
    assert keys(read_results(tmp_path)) == expected

    (report,) = compact(tmp_path)
    assert (report.files_before, report.rows_before, report.files_after, report.rows_after) == (2, 7, 1, 5)
    assert len(store_files(tmp_path)) == 1
    raw = ds.dataset(tmp_path, partitioning="hive").to_table()  # plain pyarrow after compaction
    assert keys(raw) == expected
    assert raw["trial_id"].to_pylist() == ["t1"] * 4 + ["t2"] and raw["step"].to_pylist() == [10, 20, 30, 40, 10]


def test_readers_see_each_row_once_between_compaction_rename_and_delete(tmp_path):
    for k in range(5):
        write(tmp_path, [row(f"t{k}", s, second=s) for s in (10, 20)])
    before = keys(read_results(tmp_path))
    saved = tmp_path.parent / f"{tmp_path.name}-old"
    shutil.copytree(tmp_path / "experiment=exp", saved)
    compact(tmp_path, "exp")
    for path in saved.iterdir():  # the old files are back: as if deletion had not happened yet
        shutil.copy(path, tmp_path / "experiment=exp" / path.name)
    assert len(store_files(tmp_path)) == 6
    assert keys(read_results(tmp_path)) == before
    assert keys(completed_results(read_results(tmp_path))) == []


def test_compaction_leaves_files_written_while_it_runs(tmp_path, monkeypatch):
    import orchestrator.store.compact as compact_module

    write(tmp_path, [row("t1", 10)])
    write(tmp_path, [row("t1", 20)])
    original = compact_module.open_files

    def open_while_a_sweep_flushes(root, files, **kwargs):
        opened = original(root, files, **kwargs)
        write(tmp_path, [row("t1", 30)])
        return opened

    monkeypatch.setattr(compact_module, "open_files", open_while_a_sweep_flushes)
    (report,) = compact(tmp_path)
    assert (report.files_before, report.rows_after) == (2, 2) and len(store_files(tmp_path)) == 2
    assert keys(read_results(tmp_path)) == [("t1", 10, 1), ("t1", 20, 1), ("t1", 30, 1)]


def test_two_compactions_of_one_experiment_are_kept_apart(tmp_path):
    import filelock

    write(tmp_path, [row("t1", 10)])
    write(tmp_path, [row("t1", 20)])
    with filelock.FileLock(str(tmp_path / "experiment=exp" / ".compact.lock")):
        with pytest.raises(UsageError, match="another compaction is running"):
            compact(tmp_path)
    assert len(store_files(tmp_path)) == 2


def test_compaction_refuses_an_unreadable_file_and_keeps_every_file(tmp_path):
    write(tmp_path, [row("t1", 10)])
    write(tmp_path, [row("t1", 20)])
    (tmp_path / "experiment=exp" / "part-bad.parquet").write_text("not parquet")
    with pytest.raises(UsageError, match="part-bad.parquet"):
        compact(tmp_path)
    assert len(store_files(tmp_path)) == 3


def test_latest_rows_follow_the_latest_attempt_even_at_a_lower_step(tmp_path):
    rows = [row("t1", s, 1, second=s) for s in (10, 20, 30)]
    rows += [row("t1", None, 2, second=99, status="error", error="RuntimeError: boom")]  # failed before reporting
    rows += [row("t2", 10, second=1), row("t2", 20, second=2, status="completed")]
    write(tmp_path, rows)
    latest = {r["trial_id"]: r for r in final_rows(read_results(tmp_path)).to_pylist()}
    assert (latest["t1"]["status"], latest["t1"]["attempt"], latest["t1"]["step"]) == ("error", 2, None)
    assert latest["t2"]["step"] == 20
    assert completed_results(read_results(tmp_path))["trial_id"].to_pylist() == ["t2"]


def _reference_winners(rows, key, rank):
    best = {}
    for i, r in enumerate(rows):
        k = key(r)
        if k not in best or rank(r) > rank(rows[best[k]]):
            best[k] = i
    return sorted(best.values())


_rows = st.lists(
    st.tuples(st.sampled_from(["a", "b"]), st.sampled_from(["t1", "t2", "t3"]), st.none() | st.integers(0, 3),
              st.integers(1, 3), st.integers(0, 5)),
    max_size=40,
)


def _step(r) -> int:
    return -1 if r[2] is None else r[2]  # a missing step ranks below every step


def _table(rows) -> pa.Table:
    return pa.table({
        "experiment": [r[0] for r in rows], "trial_id": [r[1] for r in rows],
        "step": pa.array([r[2] for r in rows], pa.int64()), "attempt": pa.array([r[3] for r in rows], pa.int32()),
        "timestamp": pa.array([T0 + dt.timedelta(seconds=r[4]) for r in rows], pa.timestamp("us", tz="UTC")),
        "i": list(range(len(rows))),
    })


@settings(max_examples=150, deadline=None)
@given(_rows)
def test_deduplicate_keeps_the_latest_attempt_then_timestamp_per_step(rows):
    got = deduplicate(_table(rows))["i"].to_pylist()
    expected = _reference_winners(rows, key=lambda r: r[:3], rank=lambda r: (r[3], r[4]))
    # ties (same attempt and timestamp) may pick either row; the kept keys and their rank must match
    assert len(got) == len(expected) == len({r[:3] for r in rows})
    assert got == sorted(got)  # rows keep their order
    summary = lambda i: (rows[i][0], rows[i][1], _step(rows[i]), rows[i][3], rows[i][4])  # noqa: E731
    assert sorted(map(summary, got)) == sorted(map(summary, expected))


@settings(max_examples=150, deadline=None)
@given(_rows)
def test_latest_rows_rank_by_attempt_then_step_then_timestamp(rows):
    got = latest_rows(_table(rows))["i"].to_pylist()
    expected = _reference_winners(rows, key=lambda r: r[:2], rank=lambda r: (r[3], _step(r), r[4]))
    summary = lambda i: (rows[i][0], rows[i][1], rows[i][3], _step(rows[i]), rows[i][4])  # noqa: E731
    assert sorted(map(summary, got)) == sorted(map(summary, expected))


# -- the Tune callback, driven without Ray


def _config_columns(config: dict) -> dict:
    return {"rank": config["rank"], "scaling": "standard"}


def _total_steps(config: dict) -> int:
    return config["steps"]


def _callback(root):
    from orchestrator.store.callback import StoreCallback

    return StoreCallback(str(root), "exp", config_columns=_config_columns, total_steps=_total_steps,
                         static={"git_commit": "abc"}, flush_rows=1000, flush_seconds=1e9)


def _trial(trial_id, error_file=None, steps=30):
    return SimpleNamespace(trial_id=trial_id, config={"rank": 4, "steps": steps}, error_file=error_file)


def _stored(root):
    """Every stored row, superseded ones included."""
    table = open_results(root).to_table().sort_by([("trial_id", "ascending"), ("attempt", "ascending"), ("step", "ascending")])
    return [(r["trial_id"], r["attempt"], r["step"], r["status"]) for r in table.to_pylist()]


def test_callback_statuses_attempts_and_error_rows(tmp_path):
    cb = _callback(tmp_path)
    t1, t2, t3, t4 = _trial("t1"), _trial("t2"), _trial("t3", steps=100), _trial("t4")
    error_file = tmp_path / "error.txt"
    error_file.write_text("Traceback (most recent call last):\n  ...\nValueError: bad rank\n")
    t2.error_file = str(error_file)
    for t in (t1, t2, t3, t4):
        cb.on_trial_start(0, [], t)
    cb.on_trial_result(0, [], t1, {"step": 10, "eval_ce": 2.0, "trial_id": "ignored", "status": "x"})
    cb.on_trial_result(0, [], t1, {"step": 20, "eval_ce": 1.5})
    cb.on_trial_recover(0, [], t1)
    cb.on_trial_result(0, [], t1, {"step": 20, "eval_ce": 1.4})
    cb.on_trial_result(0, [], t1, {"step": 30, "eval_ce": 1.2})
    cb.on_trial_complete(0, [], t1)
    cb.on_trial_error(0, [], t2)  # failed before reporting anything
    cb.on_trial_result(0, [], t3, {"step": 10})
    cb.on_trial_complete(0, [], t3)  # ended before train.steps: stopped
    cb.on_trial_result(0, [], t4, {"step": 10, "diverged": True})
    cb.on_experiment_end([t1, t2, t3, t4])
    assert _stored(tmp_path) == [
        ("t1", 1, 10, "running"), ("t1", 1, 20, "running"), ("t1", 2, 20, "running"), ("t1", 2, 30, "completed"),
        ("t2", 1, None, "error"), ("t3", 1, 10, "stopped"), ("t4", 1, 10, "diverged"),
    ]
    rows = {(r["trial_id"], r["step"]): r for r in read_results(tmp_path).to_pylist()}
    assert rows[("t2", None)]["error"] == "ValueError: bad rank" and rows[("t2", None)]["rank"] == 4
    assert rows[("t1", 20)]["eval_ce"] == 1.4 and rows[("t1", 10)]["trial_id"] == "t1"
    assert rows[("t1", 10)]["git_commit"] == "abc" and rows[("t1", 10)]["error"] is None


def test_callback_error_after_results_marks_the_held_back_row(tmp_path):
    cb = _callback(tmp_path)
    t1 = _trial("t1")
    cb.on_trial_result(0, [], t1, {"step": 10})
    cb.on_trial_result(0, [], t1, {"step": 20})
    cb.on_trial_error(0, [], t1)
    assert _stored(tmp_path) == [("t1", 1, 10, "running"), ("t1", 1, 20, "error")]
    assert read_results(tmp_path)["error"].to_pylist()[-1] == "trial failed (no error message recorded)"


def test_callback_continues_attempts_after_a_driver_restart(tmp_path, monkeypatch):
    monkeypatch.setattr(callback_module, "TRIAL_END_FLUSH_INTERVAL_S", 0.0)  # flush at every trial end
    first = _callback(tmp_path)
    pickled = pickle.dumps(first)  # what Ray stores with the experiment before it runs
    t1 = _trial("t1")
    first.on_trial_start(0, [], t1)
    first.on_trial_result(0, [], t1, {"step": 10})
    first.on_trial_recover(0, [], t1)
    first.on_trial_result(0, [], t1, {"step": 20})
    first.on_experiment_end([])  # the driver dies: the held-back row is lost, flushed rows stay
    assert _stored(tmp_path) == [("t1", 1, 10, "running")]

    restored = pickle.loads(pickled)
    restored.on_trial_start(0, [], t1)
    restored.on_trial_start(0, [], _trial("new"))
    restored.on_trial_result(0, [], t1, {"step": 10})
    restored.on_trial_result(0, [], t1, {"step": 20})
    restored.on_trial_complete(0, [], t1)
    assert restored.attempt("t1") == 2 and restored.attempt("new") == 1
    restored.on_trial_recover(0, [], t1)
    assert restored.attempt("t1") == 3
    assert _stored(tmp_path) == [("t1", 1, 10, "running"), ("t1", 2, 10, "running"), ("t1", 2, 20, "stopped")]
    assert keys(read_results(tmp_path)) == [("t1", 10, 2), ("t1", 20, 2)]


def test_trial_end_flushes_are_coalesced(tmp_path):
    """A burst of trials ending within a second shares one file; experiment end writes the rest."""
    cb = _callback(tmp_path)
    for name in ("a", "b", "c"):
        trial = _trial(name)
        cb.on_trial_start(0, [], trial)
        cb.on_trial_result(0, [], trial, {"step": 10})
        cb.on_trial_complete(0, [], trial)
    files = lambda: [f for f in (tmp_path / "experiment=exp").glob("*.parquet")]
    assert len(files()) <= 1
    cb.on_experiment_end([])
    assert sorted(t for t, *_ in _stored(tmp_path)) == ["a", "b", "c"]


def test_snapshot_state_keeps_held_back_rows_across_a_driver_kill(tmp_path):
    """Tune saves get_state() with the trials' checkpoints; a killed driver restored from that
    snapshot still writes the row of the step its checkpoint is at."""
    cb = _callback(tmp_path)
    t1 = _trial("t1")
    cb.on_trial_start(0, [], t1)
    cb.on_trial_result(0, [], t1, {"step": 10})
    cb.on_trial_result(0, [], t1, {"step": 20})  # held back; its checkpoint is step 20
    state = pickle.loads(pickle.dumps(cb.get_state()))  # the snapshot; then the driver dies
    assert _stored(tmp_path) == [("t1", 1, 10, "running")]  # the snapshot flushed released rows

    restored = _callback(tmp_path)
    restored.set_state(state)
    restored.on_trial_start(0, [], t1)
    restored.on_trial_result(0, [], t1, {"step": 30})  # resumed from the step-20 checkpoint
    restored.on_trial_complete(0, [], t1)
    restored.on_experiment_end([])
    assert keys(read_results(tmp_path)) == [("t1", 10, 1), ("t1", 20, 1), ("t1", 30, 2)]
