"""Result-store benchmark: each figure next to a baseline measured in the same run, as a ratio.

    ingest    N dict rows through ResultWriter.append (the callback's path) in 1,000 flushes,
              so 1,000 small files               vs  pq.write_table of the same rows, one file
    query     "rank >= 32 and scaling == 'rslora'" and "latest row per trial" through
              lorasweep's query path (orchestrator.store.query, as `lorasweep query`)
                                                  vs  hand-written pyarrow on the same files
    files     a full scan of the 1,000-file store, before and after `compact`
                                                  vs  the same rows in one file
    context   pandas over CSV for the same two queries
    s3        the same against a real S3 endpoint on loopback (moto's server, as the tests
              use): ingest through ResultWriter into s3:// (1,000 objects)  vs  one
              pq.write_table to S3; compaction on S3; query --where on the s3:// URI  vs
              dataset.to_table(filter=...) with a hand-configured S3FileSystem

Goals: ingest >= 100k rows/s (local and S3); query --where and --latest <= 1.05x locally,
--where <= 1.2x on S3; scan after compaction <= 1.5x one file.
Run: .venv/bin/python bench/store.py [--rows N] [--no-s3]   (a few minutes at 1,000,000
rows on 2 cores; the figures vary with machine load, the ratios much less)
"""
from __future__ import annotations

import argparse
import datetime as dt
import functools
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.dataset as ds
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from orchestrator.store import ResultWriter, open_results  # noqa: E402
from orchestrator.store.compact import compact  # noqa: E402
from orchestrator.store.query import query  # noqa: E402
from orchestrator.store.schema import COLUMNS  # noqa: E402

EVALS_PER_TRIAL = 500
CONCURRENT = 8  # trials reporting at the same time, so their rows interleave as in a sweep
WHERE = "rank >= 32 and scaling == 'rslora'"
RAW_FILTER = (pc.field("rank") >= 32) & (pc.field("scaling") == "rslora")
MODULES = [f"model.layers.{i}.self_attn.{m}" for i in range(2) for m in ("q_proj", "v_proj")]


@functools.lru_cache(maxsize=None)
def trial_config(t: int) -> dict:
    ranks, models = [1, 2, 4, 8, 16, 32, 64], ["zoo/llama-xs", "zoo/llama-s", "zoo/llama-m"]
    rank, scaling, model = ranks[t % 7], ("standard", "rslora")[t // 7 % 2], models[t // 14 % 3]
    return dict.fromkeys(COLUMNS) | dict(
        trial_id=f"ab12c_{t:05d}", attempt=1, config_hash=f"{t // 5:012x}", model=model,
        model_params=4_000_000 * 4 ** models.index(model), model_params_non_embedding=3_000_000,
        trainable_params=rank * 4096, task="synthetic/kv-recall", train_size=2000, eval_size=256, complexity=4,
        rank=rank, alpha=16.0, scaling=scaling, scale_factor=16.0 / (rank ** 0.5 if scaling == "rslora" else rank),
        target_modules="q_proj,v_proj", lr=1e-3, seed=t % 5, batch_size=16, miub_estimator="jsd_topk",
        node="worker-3", num_workers=1, zero_stage=0, precision="fp32", git_commit="0" * 40,
        package_versions=json.dumps({"lorasweep": "0.1.0", "ray": "2.60.0", "torch": "2.7.0", "pyarrow": "26.0.0"}),
    )


def synthetic_rows(n: int, chunk: int = 50_000):
    """Rows as the callback builds them, in chunks (generating them is not timed)."""
    rng = np.random.default_rng(0)
    t0 = dt.datetime(2025, 1, 1, tzinfo=dt.timezone.utc)
    buffer = []
    for i in range(n):
        wave, within = divmod(i, CONCURRENT * EVALS_PER_TRIAL)
        evaluation, slot = divmod(within, CONCURRENT)
        t = wave * CONCURRENT + slot
        step = (evaluation + 1) * 50
        ce = 3.0 / (1 + step / 1000) + rng.random() * 0.1
        row = dict(trial_config(t))
        row.update(
            status="completed" if evaluation == EVALS_PER_TRIAL - 1 else "running", step=step,
            tokens_seen=step * 16 * 48, train_loss=ce * 1.02, grad_norm=0.5, eval_ce=ce, eval_ppl=float(np.exp(ce)),
            eval_acc=1 - ce / 3, miub=0.3, miub_layers={m: 0.3 for m in MODULES}, wall_time_s=step * 0.05,
            timestamp=t0 + dt.timedelta(seconds=i),
        )
        buffer.append(row)
        if len(buffer) == chunk:
            yield buffer
            buffer = []
    if buffer:
        yield buffer


def best(fn, repeat: int = 3) -> tuple[float, object]:
    """Fastest of ``repeat`` runs (the machine may be shared: the minimum is the least disturbed)."""
    times, out = [], None
    for _ in range(repeat):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    return min(times), out


def compare(ours, base, repeat: int = 3) -> tuple[float, float, object, object]:
    """Alternate the two, so a change in machine load hits both alike; fastest of each."""
    ours_t, base_t, ours_out, base_out = [], [], None, None
    for _ in range(repeat):
        t, ours_out = best(ours, 1)
        ours_t.append(t)
        t, base_out = best(base, 1)
        base_t.append(t)
    return min(ours_t), min(base_t), ours_out, base_out


def report(name: str, ours: float, base: float, base_name: str, goal: str = "", ok: bool | None = None) -> None:
    verdict = "" if ok is None else ("  ok" if ok else "  MISSED")
    print(f"  {name:<44} {ours:7.3f} s | {base_name:<32} {base:7.3f} s | ratio {ours / base:5.2f}x  {goal}{verdict}")


def raw_latest(path, filesystem=None) -> pa.Table:
    """Hand-written pyarrow: each trial's highest step, by a group-by and a join on keys."""
    table = ds.dataset(path, filesystem=filesystem, partitioning="hive").to_table()
    keys = table.select(["experiment", "trial_id", "step"]).append_column("_i", pa.array(np.arange(table.num_rows)))
    top = keys.group_by(["experiment", "trial_id"]).aggregate([("step", "max")])
    hit = keys.join(top, ["experiment", "trial_id"]).filter(pc.field("step") == pc.field("step_max"))
    return table.take(np.sort(hit["_i"].to_numpy()))


def bench_ingest(n: int, small: Path, one: Path) -> pa.Table:
    """Append every row (1,000 flushes), then write the same rows with one pq.write_table."""
    writer = ResultWriter(small, "bench", flush_rows=max(n // 1000, 1), flush_seconds=1e9)
    spent = 0.0
    for chunk in synthetic_rows(n):
        start = time.perf_counter()
        for row in chunk:
            writer.append(row)
        spent += time.perf_counter() - start
    start = time.perf_counter()
    writer.close()
    spent += time.perf_counter() - start
    table = ds.dataset(small, partitioning="hive").to_table().drop_columns(["experiment"])
    assert table.num_rows == n
    (one / "experiment=bench").mkdir(parents=True)
    write_s, _ = best(lambda: pq.write_table(table, one / "experiment=bench" / "part-one.parquet"), repeat=1)
    report(f"ResultWriter.append, {writer.files_written:,} flushes", spent, write_s, "pq.write_table, one call",
           f"{n / spent / 1000:,.0f}k rows/s, goal >= 100k", n / spent >= 100_000)
    return table


def bench_files(small: Path, one: Path, compacted: Path) -> None:
    shutil.copytree(small, compacted)
    compact_s, (summary,) = best(lambda: compact(compacted), repeat=1)
    print(f"  compact: {summary}, {compact_s:.2f} s")
    before_s, one_s, _, _ = compare(lambda: open_results(small).to_table(), lambda: open_results(one).to_table(), 2)
    report(f"full scan, {summary.files_before:,} files (before)", before_s, one_s, "the same rows in one file")
    after_s, one_s, _, _ = compare(lambda: open_results(compacted).to_table(), lambda: open_results(one).to_table())
    report(f"full scan, {summary.files_after} file after compact", after_s, one_s, "the same rows in one file",
           "goal <= 1.5x", after_s / one_s <= 1.5)


def bench_query(n: int, compacted: Path) -> tuple[float, float]:
    where_s, raw_s, ours, raw = compare(
        lambda: query(compacted, where=WHERE).table,
        lambda: ds.dataset(compacted, partitioning="hive").to_table(filter=RAW_FILTER), repeat=5,
    )
    assert ours.num_rows == raw.num_rows > 0
    report(f"query --where ({ours.num_rows:,} rows)", where_s, raw_s, "dataset.to_table(filter=...)",
           "goal <= 1.05x", where_s / raw_s <= 1.05)
    latest_s, raw_s, ours, raw = compare(lambda: query(compacted, latest=True).table, lambda: raw_latest(compacted),
                                         repeat=5)
    assert ours.num_rows == raw.num_rows == n // EVALS_PER_TRIAL
    report(f"query --latest ({ours.num_rows:,} rows)", latest_s, raw_s, "group_by + join + take",
           "goal <= 1.05x", latest_s / raw_s <= 1.05)
    return where_s, latest_s


def bench_s3(n: int, table: pa.Table, compacted: Path) -> None:
    """Ingest, compaction and --where on a real S3 endpoint (moto's server on loopback)."""
    import os

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from s3_server import S3Server, free_port, server_environment, start_server, stop_server

    port = free_port()
    proc = start_server(port)
    try:
        server = S3Server(f"http://127.0.0.1:{port}", "bucket")
        os.environ.update(server_environment(server.endpoint))
        s3 = server.filesystem()
        s3.create_dir("bucket")
        writer = ResultWriter("s3://bucket/small", "bench", flush_rows=max(n // 1000, 1), flush_seconds=1e9)
        spent = 0.0
        for chunk in synthetic_rows(n):
            start = time.perf_counter()
            for row in chunk:
                writer.append(row)
            spent += time.perf_counter() - start
        start = time.perf_counter()
        writer.close()
        spent += time.perf_counter() - start
        write_s, _ = best(lambda: pq.write_table(table, "bucket/one/experiment=bench/part-one.parquet", filesystem=s3), 1)
        report(f"s3: ResultWriter.append, {writer.files_written:,} objects", spent, write_s, "s3: pq.write_table, one call",
               f"{n / spent / 1000:,.0f}k rows/s, goal >= 100k", n / spent >= 100_000)
        # The same rows in 100 flushes: what a larger results.flush_rows buys on an object
        # store, where each flush costs one request whatever its size.
        fewer = ResultWriter("s3://bucket/fewer", "bench", flush_rows=max(n // 100, 1), flush_seconds=1e9)
        spent_fewer = 0.0
        for chunk in synthetic_rows(n):
            start = time.perf_counter()
            for row in chunk:
                fewer.append(row)
            spent_fewer += time.perf_counter() - start
        start = time.perf_counter()
        fewer.close()
        spent_fewer += time.perf_counter() - start
        report(f"s3: ResultWriter.append, {fewer.files_written:,} objects", spent_fewer, write_s,
               "s3: pq.write_table, one call", f"{n / spent_fewer / 1000:,.0f}k rows/s", n / spent_fewer >= 100_000)
        compact_s, (summary,) = best(lambda: compact("s3://bucket/small"), repeat=1)
        print(f"  s3: compact: {summary}, {compact_s:.2f} s")
        where_s, raw_s, ours, raw = compare(
            lambda: query("s3://bucket/small", where=WHERE).table,
            lambda: ds.dataset("bucket/small", filesystem=s3, partitioning="hive").to_table(filter=RAW_FILTER),
            repeat=5,
        )
        assert ours.num_rows == raw.num_rows > 0
        report(f"s3: query --where ({ours.num_rows:,} rows)", where_s, raw_s, "s3: dataset.to_table(filter=...)",
               "goal <= 1.2x", where_s / raw_s <= 1.2)
        latest_s, raw_s, ours, raw = compare(
            lambda: query("s3://bucket/small", latest=True).table,
            lambda: raw_latest("bucket/small", filesystem=s3), repeat=3,
        )
        assert ours.num_rows == raw.num_rows == n // EVALS_PER_TRIAL
        report(f"s3: query --latest ({ours.num_rows:,} rows)", latest_s, raw_s, "s3: group_by + join + take")
    finally:
        stop_server(proc)


def bench_pandas(table: pa.Table, csv_path: Path, where_s: float, latest_s: float) -> None:
    import pandas as pd

    text = table.set_column(table.schema.get_field_index("miub_layers"), "miub_layers",
                            pa.array(["{}"] * table.num_rows))
    pacsv.write_csv(text, csv_path)
    read_s, frame = best(lambda: pd.read_csv(csv_path, dtype={"config_hash": str}), repeat=1)
    filter_s, _ = best(lambda: frame[(frame["rank"] >= 32) & (frame["scaling"] == "rslora")])
    group_s, _ = best(lambda: frame.loc[frame.groupby("trial_id")["step"].idxmax()])
    report("pandas read_csv + filter", read_s + filter_s, where_s, "lorasweep query --where")
    report("pandas read_csv + groupby idxmax", read_s + group_s, latest_s, "lorasweep query --latest")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--no-s3", action="store_true", help="skip the S3 part (needs moto[server])")
    args = parser.parse_args(argv)
    n = args.rows
    work = Path(tempfile.mkdtemp(prefix="lorasweep-bench-"))
    small, one, compacted = work / "small", work / "one", work / "compacted"
    try:
        print(f"result store benchmark: {n:,} rows, {n // EVALS_PER_TRIAL:,} trials; ours | baseline | ratio")
        print("ingest")
        table = bench_ingest(n, small, one)
        print("small files")
        bench_files(small, one, compacted)
        print("query, compacted store")
        where_s, latest_s = bench_query(n, compacted)
        print("context: pandas over CSV (ratio = pandas / lorasweep)")
        bench_pandas(table, work / "rows.csv", where_s, latest_s)
        if not args.no_s3:
            print("s3 (moto server on 127.0.0.1)")
            bench_s3(n, table, compacted)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
