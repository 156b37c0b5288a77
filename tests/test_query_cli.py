"""``lorasweep query`` and ``lorasweep compact`` through the real CLI entry point."""
from __future__ import annotations

import csv
import datetime as dt
import io
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from orchestrator.cli import main
from orchestrator.store import SCHEMA_VERSION, ResultWriter
from orchestrator.store.files import file_schema, store_files

T0 = dt.datetime(2025, 1, 1, tzinfo=dt.timezone.utc)


def _row(trial, step, attempt=1, status="running", **columns):
    row = dict(trial_id=trial, attempt=attempt, status=status, model="zoo/llama-xs", rank=8, scaling="standard",
               step=step, eval_ce=1.0, timestamp=T0 + dt.timedelta(seconds=10 * attempt + step),
               miub_layers={"layers.0.q_proj": 0.5})
    row.update(columns)
    return row


@pytest.fixture
def store(tmp_path):
    """Two trials of one experiment; t1 was retried from step 20 and finished as attempt 2."""
    root = tmp_path / "results"
    first = [_row("t1", 10, eval_ce=3.0), _row("t1", 20, eval_ce=1.0),
             _row("t2", 10, rank=32, scaling="rslora", eval_ce=float("nan")),
             _row("t2", 20, rank=32, scaling="rslora", status="completed", eval_ce=0.5)]
    second = [_row("t1", 20, 2, eval_ce=5.0), _row("t1", 30, 2, status="completed", eval_ce=0.8)]
    for rows in (first, second):
        with ResultWriter(root, "exp", flush_rows=1000, flush_seconds=1e9) as writer:
            writer.extend(rows)
    return root


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_table_output_shows_one_row_per_step_from_the_latest_attempt(store, capsys):
    code, out, err = run(capsys, "query", store, "--columns", "trial_id,step,attempt,eval_ce")
    assert code == 0 and err == ""
    lines = out.splitlines()
    assert lines[0].split() == ["trial_id", "step", "attempt", "eval_ce"]
    assert sorted(tuple(line.split()) for line in lines[2:-1]) == [
        ("t1", "10", "1", "3"), ("t1", "20", "2", "5"), ("t1", "30", "2", "0.8"), ("t2", "10", "1", "nan"),
        ("t2", "20", "1", "0.5")]
    assert lines[-1] == "(5 rows)"


def test_where_tests_deduplicated_rows_so_a_superseded_row_never_matches(store, capsys):
    code, out, _ = run(capsys, "query", store, "--where", "eval_ce < 2 and rank == 8", "--format", "csv",
                       "--columns", "trial_id,step,attempt")
    assert code == 0
    assert list(csv.DictReader(io.StringIO(out))) == [{"trial_id": "t1", "step": "30", "attempt": "2"}]


def test_latest_then_where_gives_completed_final_results(store, capsys):
    code, out, _ = run(capsys, "query", store, "--latest", "--where", "status == 'completed' and step >= 30",
                       "--format", "json")
    assert code == 0
    (row,) = json.loads(out)
    assert (row["trial_id"], row["step"], row["attempt"], row["experiment"]) == ("t1", 30, 2, "exp")
    assert row["miub_layers"] == {"layers.0.q_proj": 0.5} and row["timestamp"].startswith("2025-01-01T00:00:50")


def test_latest_row_is_chosen_before_the_filter_tests_it(store, capsys):
    code, out, _ = run(capsys, "query", store, "--latest", "--where", "step <= 20 and rank >= 8",
                       "--format", "csv", "--columns", "trial_id,step")
    assert code == 0 and list(csv.DictReader(io.StringIO(out))) == [{"trial_id": "t2", "step": "20"}]


def test_json_writes_nan_as_null(store, capsys):
    code, out, _ = run(capsys, "query", store, "--where", "rank in (32) and step == 10", "--format", "json")
    assert code == 0 and json.loads(out)[0]["eval_ce"] is None


def test_output_files_are_written_whole(store, tmp_path, capsys):
    target = tmp_path / "out.parquet"
    code, _, err = run(capsys, "query", store, "--where", "scaling == 'rslora'", "--format", "parquet",
                       "--output", target, "--columns", "trial_id,step,miub_layers")
    assert code == 0 and "2 rows written" in err
    table = pq.read_table(target)
    assert table.column_names == ["trial_id", "step", "miub_layers"] and table.num_rows == 2
    code, _, _ = run(capsys, "query", store, "--format", "csv", "--output", tmp_path / "out.csv")
    assert code == 0 and sorted(p.name for p in tmp_path.iterdir()) == ["out.csv", "out.parquet", "results"]


@pytest.mark.parametrize("where", [
    "__import__('os').system('touch {marker}')",
    "rank.__class__",
    "rank.__class__.__mro__ == 1",
    "open('{marker}', 'w')",
    "rank > 1; __import__('os')",
    "eval('1') == 1",
    "(lambda: 1)() == 1",
    "rank == 1 or exec('x')",
    "rank == {{}}",
])
def test_hostile_where_is_rejected_with_exit_2(store, tmp_path, capsys, where):
    marker = tmp_path / "marker"
    code, out, err = run(capsys, "query", store, "--where", where.format(marker=marker))
    assert code == 2 and out == ""
    (line,) = err.splitlines()
    assert line.startswith("lorasweep: error: --where ")
    assert not marker.exists()


@pytest.mark.parametrize("argv, fragment", [
    (["--where", "rnak > 1"], "unknown column 'rnak' (did you mean 'rank'?)"),
    (["--where", "rank >"], "character 7: expected a column or a value"),
    (["--columns", "trial_id,bogus"], "--columns: unknown column(s) 'bogus'"),
    (["--format", "parquet"], "--format parquet needs --output"),
])
def test_usage_errors_exit_2_with_one_line(store, capsys, argv, fragment):
    code, out, err = run(capsys, "query", store, *argv)
    assert code == 2 and out == "" and len(err.splitlines()) == 1 and fragment in err


def test_missing_store_exits_2(tmp_path, capsys):
    code, _, err = run(capsys, "query", tmp_path / "nowhere")
    assert code == 2 and "no result store here" in err


def test_truncated_file_is_named_and_skip_bad_reads_the_rest(store, capsys):
    good = store_files(store)[0]
    bad = good.with_name("part-cut.parquet")
    bad.write_bytes(good.read_bytes()[:100])
    code, out, err = run(capsys, "query", store)
    assert code == 2 and out == "" and str(bad) in err and "Traceback" not in err
    code, out, err = run(capsys, "query", store, "--skip-bad", "--format", "csv", "--columns", "trial_id,step")
    assert code == 0 and f"skipped {bad}" in err
    assert len(list(csv.DictReader(io.StringIO(out)))) == 5


def test_a_file_whose_column_has_another_type_is_named(store, capsys):
    schema = file_schema()
    odd = schema.set(schema.get_field_index("rank"), pa.field("rank", pa.string()))
    row = {**_row("t9", 10), "rank": "big"}
    bad = store / "experiment=exp" / "part-odd.parquet"
    pq.write_table(pa.Table.from_pylist([row], schema=odd), bad)
    code, out, err = run(capsys, "query", store)
    assert code == 2 and out == "" and str(bad) in err and "Traceback" not in err


def test_newer_schema_version_is_refused_with_upgrade_message(store, capsys):
    newer = file_schema().with_metadata({b"lorasweep.schema_version": str(SCHEMA_VERSION + 1).encode()})
    pq.write_table(pa.Table.from_pylist([_row("t9", 10)], schema=newer), store / "experiment=exp" / "part-new.parquet")
    code, _, err = run(capsys, "query", store)
    assert code == 2
    assert f"written by a newer lorasweep (schema {SCHEMA_VERSION + 1} > {SCHEMA_VERSION}); upgrade" in err


def test_compact_rewrites_files_and_keeps_query_results(store, capsys):
    _, before, _ = run(capsys, "query", store, "--format", "csv")
    code, out, _ = run(capsys, "compact", store, "--experiment", "exp")
    assert code == 0 and out.strip() == "experiment=exp: 2 files, 6 rows -> 1 file, 5 rows (1 superseded row dropped)"
    assert len(store_files(store)) == 1
    _, after, _ = run(capsys, "query", store, "--format", "csv")
    assert sorted(after.splitlines()) == sorted(before.splitlines())
    code, _, err = run(capsys, "compact", store, "--experiment", "other")
    assert code == 2 and "no experiment 'other'" in err
