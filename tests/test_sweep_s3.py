"""A real sweep with results.path on S3 (moto's server on loopback): rows, Ray's state and
compaction all land in the bucket, and the CLI and plain pyarrow read them from there."""
from __future__ import annotations

import json
import math
from pathlib import Path

import pyarrow.dataset as ds
import pyarrow.fs as pafs
import pytest

from orchestrator.cli import main

from s3_server import s3_server  # noqa: F401  (the fixture)

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--set", "lora.rank={grid: [1, 4]}", "--set", "lora.scaling=rslora", "--set", "train.steps=4",
        "--set", "train.eval_every=2", "--set", "data.train_size=128", "--set", "data.eval_size=32",
        # one trial at a time: two trials uploading checkpoints at once can starve moto's
        # server on a 2-core machine past the S3 client's 3-second low-speed limit
        "--set", "resources.max_concurrent_trials=1"]


@pytest.mark.slow
def test_quickstart_sweep_on_s3_then_query_compact_analyze(s3_server, ray_shutdown, capsys):
    results = s3_server.uri("sweeps", "results")
    code = main(["run", str(ROOT / "search_spaces" / "quickstart.yaml"), "--num-cpus", "2", *TINY,
                 "--set", f"results.path={results}"])
    out = capsys.readouterr().out
    assert code == 0
    assert f"2 trials, 4 rows in {results}/experiment=quickstart" in out  # the summary names the URI

    s3 = s3_server.filesystem()
    objects = [i.path for i in s3.get_file_info(pafs.FileSelector("bucket/sweeps/results", recursive=True))
               if i.type == pafs.FileType.File]
    parquet = [p for p in objects if p.startswith("bucket/sweeps/results/experiment=quickstart/")]
    assert len(parquet) == 1 and "-compact-" in parquet[0]  # finalized: one compacted object
    assert any(p.startswith("bucket/sweeps/results/_ray/quickstart/") for p in objects)  # Tune's state beside it
    assert not [p for p in objects if p.rsplit("/", 1)[-1].startswith(".tmp-")]

    # plain pyarrow, configured by hand: exactly one row per (trial, step)
    table = ds.dataset("bucket/sweeps/results", filesystem=s3, partitioning="hive").to_table()
    keys = sorted(zip(table["trial_id"].to_pylist(), table["step"].to_pylist()))
    assert len(keys) == len(set(keys)) == 4 and sorted({s for _, s in keys}) == [2, 4]
    assert all(math.isfinite(v) for v in table["eval_ce"].to_pylist())

    assert main(["query", results, "--latest", "--format", "json", "--columns", "rank,step,status"]) == 0
    latest = json.loads(capsys.readouterr().out)
    assert sorted((r["rank"], r["step"], r["status"]) for r in latest) == [(1, 4, "completed"), (4, 4, "completed")]
    assert main(["compact", results]) == 0
    assert "already compact" in capsys.readouterr().out
    assert main(["analyze", results, "--y", "eval_ce", "--law", "power", "--bootstrap", "50"]) == 0
    assert "eval_ce  rank" in capsys.readouterr().out


@pytest.mark.slow
def test_killed_driver_resumes_on_s3_with_one_row_per_step(s3_server, ray_shutdown):
    import os
    import signal
    import subprocess
    import sys
    import time

    from orchestrator.store import read_results

    results = s3_server.uri("killed", "results")
    args = [str(ROOT / "search_spaces" / "quickstart.yaml"), "--num-cpus", "2", "--set", "name=killed",
            "--set", "lora.rank={grid: [1, 4]}", "--set", "lora.scaling=standard", "--set", "train.steps=40",
            "--set", "train.eval_every=10", "--set", "data.train_size=128", "--set", "data.eval_size=32",
            "--set", "resources.max_concurrent_trials=1", "--set", f"results.path={results}"]
    driver = subprocess.Popen([sys.executable, "-m", "orchestrator.cli", "run", *args],  # the S3 environment is inherited
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 300
        finished: set[str] = set()
        while time.monotonic() < deadline and not finished:
            time.sleep(0.5)
            try:
                finished = {r["trial_id"] for r in read_results(results).to_pylist() if r["status"] == "completed"}
            except Exception:
                continue
        assert driver.poll() is None, "the sweep finished before it could be killed"
        os.killpg(driver.pid, signal.SIGKILL)
        driver.wait(timeout=30)
    finally:
        if driver.poll() is None:
            os.killpg(driver.pid, signal.SIGKILL)

    assert main(["run", *args, "--resume"]) == 0
    s3 = s3_server.filesystem()
    raw = ds.dataset("bucket/killed/results", filesystem=s3, partitioning="hive").to_table().to_pylist()
    keys = sorted((r["trial_id"], r["step"]) for r in raw)
    assert len(keys) == len(set(keys)) == 2 * 4  # plain pyarrow: exactly one row per (trial, step)
    assert {s for _, s in keys} == {10, 20, 30, 40}
    assert all(r["status"] == "completed" for r in raw if r["step"] == 40)
    assert all(r["attempt"] == 1 for r in raw if r["trial_id"] in finished)
