"""The result store on a real S3 endpoint (moto's server on loopback): writes, reads, query,
compact and analyze on ``s3://`` URIs, and plain pyarrow reading the same objects."""
from __future__ import annotations

import datetime as dt
import json

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest

from orchestrator.cli import main
from orchestrator.store import ResultWriter, finalize_experiment, read_results
from orchestrator.store.files import file_schema, store_files
from orchestrator.store.location import locate

from s3_server import s3_server  # noqa: F401  (the fixture)

T0 = dt.datetime(2025, 1, 1, tzinfo=dt.timezone.utc)


def _row(trial, step, attempt=1, status="running", **columns):
    row = dict(trial_id=trial, attempt=attempt, status=status, model="zoo/llama-xs", rank=8, scaling="standard",
               step=step, eval_ce=1.0 / step, timestamp=T0 + dt.timedelta(seconds=10 * attempt + step))
    row.update(columns)
    return row


def _write(root, rows, experiment="exp"):
    with ResultWriter(root, experiment, flush_rows=1000, flush_seconds=1e9) as writer:
        writer.extend(rows)


@pytest.fixture
def s3_store(s3_server):
    """t1 retried from step 20 (attempt 2), t2 once; two flushes, so two objects."""
    root = s3_server.uri("results")
    _write(root, [_row("t1", 10), _row("t1", 20), _row("t2", 10, rank=32), _row("t2", 20, rank=32, status="completed")])
    _write(root, [_row("t1", 20, 2), _row("t1", 30, 2, status="completed")])
    return root


def _plain(server, prefix="bucket/results"):
    """What a reader with nothing but pyarrow sees."""
    return ds.dataset(prefix, filesystem=server.filesystem(), partitioning="hive").to_table()


def test_objects_are_written_under_final_names_with_no_temporaries(s3_server, s3_store):
    names = [info.base_name for info in s3_server.filesystem().get_file_info(
        pafs.FileSelector("bucket/results", recursive=True)) if info.type == pafs.FileType.File]
    assert len(names) == 2 and all(n.startswith("part-") and n.endswith(".parquet") for n in names)
    (first, _) = store_files(s3_store)
    assert first.startswith("s3://bucket/results/experiment=exp/part-")
    meta = pq.read_metadata(first.removeprefix("s3://"), filesystem=s3_server.filesystem()).metadata
    assert meta[b"lorasweep.schema_version"] == b"1"


def test_reads_deduplicate_and_compaction_leaves_one_row_per_step_for_plain_pyarrow(s3_server, s3_store):
    expected = [("t1", 10, 1), ("t1", 20, 2), ("t1", 30, 2), ("t2", 10, 1), ("t2", 20, 1)]
    table = read_results(s3_store)
    assert sorted(zip(table["trial_id"].to_pylist(), table["step"].to_pylist(), table["attempt"].to_pylist())) == expected
    assert _plain(s3_server).num_rows == 6  # before: the superseded row is still in the objects
    report = finalize_experiment(s3_store, "exp")
    assert (report.files_before, report.rows_before, report.files_after, report.rows_after) == (2, 6, 1, 5)
    raw = _plain(s3_server)
    assert sorted(zip(raw["trial_id"].to_pylist(), raw["step"].to_pylist(), raw["attempt"].to_pylist())) == expected
    assert finalize_experiment(s3_store, "missing") is None


def test_query_and_compact_commands_take_the_uri(s3_server, s3_store, capsys):
    assert main(["query", s3_store, "--latest", "--where", "status == 'completed'", "--format", "json",
                 "--columns", "trial_id,step,attempt"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert sorted((r["trial_id"], r["step"], r["attempt"]) for r in rows) == [("t1", 30, 2), ("t2", 20, 1)]
    assert main(["compact", s3_store]) == 0
    assert capsys.readouterr().out.strip() == "experiment=exp: 2 files, 6 rows -> 1 file, 5 rows (1 superseded row dropped)"
    assert main(["compact", s3_store]) == 0
    assert "already compact" in capsys.readouterr().out
    assert not locate(s3_store).exists("bucket/results/experiment=exp/.compact.lock")  # the lock is released


def test_missing_and_bad_objects_are_named_by_uri(s3_server, s3_store, capsys):
    assert main(["query", s3_server.uri("nothing-here")]) == 2
    assert "s3://bucket/nothing-here: no result store here" in capsys.readouterr().err
    with s3_server.filesystem().open_output_stream("bucket/results/experiment=exp/part-bad.parquet") as out:
        out.write(b"not parquet")
    assert main(["query", s3_store]) == 2
    err = capsys.readouterr().err
    assert "s3://bucket/results/experiment=exp/part-bad.parquet: not a readable Parquet file" in err
    assert main(["query", s3_store, "--skip-bad", "--format", "csv", "--columns", "trial_id"]) == 0
    assert "skipped s3://bucket/results/experiment=exp/part-bad.parquet" in capsys.readouterr().err


def test_a_fresh_compaction_lock_object_keeps_a_second_compaction_out(s3_server, s3_store, capsys):
    with s3_server.filesystem().open_output_stream("bucket/results/experiment=exp/.compact.lock") as out:
        out.write(json.dumps({"token": "other", "since": dt.datetime.now().timestamp()}).encode())
    assert main(["compact", s3_store]) == 2
    assert "another compaction is running" in capsys.readouterr().err
    assert len(store_files(s3_store)) == 2


def test_analyze_reads_the_uri(s3_server, capsys):
    root = s3_server.uri("laws")
    rows = [_row(f"t{r}-{seed}", 100, status="completed", rank=r, seed=seed, eval_ce=2.0 * r ** -0.5 + 0.01 * seed,
                 eval_acc=0.5) for r in (1, 2, 4, 8, 16) for seed in (0, 1)]
    _write(root, rows, experiment="laws")
    assert main(["analyze", root, "--y", "eval_ce", "--bootstrap", "50"]) == 0
    out = capsys.readouterr().out
    power = next(line for line in out.splitlines() if line.startswith("eval_ce") and " power " in line)
    assert "0.49" in power.split()[4] or "0.50" in power.split()[4]  # eval_ce ~ 2 rank^-0.5: b = 0.5
    assert power.split()[-1] == "holds"


def test_pyarrow_from_uri_as_in_the_readme(s3_server, s3_store):
    filesystem, path = pafs.FileSystem.from_uri(s3_store)  # endpoint and keys from the environment
    table = ds.dataset(path, filesystem=filesystem, partitioning="hive").to_table(filter=ds.field("rank") >= 8)
    assert table.num_rows == 6 and set(table["experiment"].to_pylist()) == {"exp"}
    assert pa.types.is_string(file_schema().field("trial_id").type)
