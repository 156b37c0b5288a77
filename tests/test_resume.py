"""A sweep whose driver is SIGKILLed, then resumed with --resume, completes every trial once."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.dataset as ds
import pytest

from orchestrator.cli import main
from orchestrator.store import read_results

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_killed_driver_resumes_without_loss_or_duplicates(tmp_path, ray_shutdown):
    results = tmp_path / "results"
    args = [
        str(ROOT / "search_spaces" / "quickstart.yaml"), "--num-cpus", "2",
        "--set", "name=killed", "--set", "lora.rank={grid: [1, 2, 4, 8]}", "--set", "lora.scaling=standard",
        "--set", "train.steps=100", "--set", "train.eval_every=20", "--set", f"results.path={results}",
    ]
    driver = subprocess.Popen(
        [sys.executable, "-m", "orchestrator.cli", "run", *args],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 300
        finished_first: set[str] = set()
        while time.monotonic() < deadline:  # kill once the first trial has finished
            time.sleep(0.5)
            try:
                finished_first = {r["trial_id"] for r in read_results(results).to_pylist() if r["status"] == "completed"}
            except Exception:
                continue
            if finished_first:
                break
        assert driver.poll() is None, "the sweep finished before it could be killed"
        os.killpg(driver.pid, signal.SIGKILL)
        driver.wait(timeout=30)
    finally:
        if driver.poll() is None:
            os.killpg(driver.pid, signal.SIGKILL)

    assert main(["run", *args, "--resume"]) == 0
    rows = read_results(results).to_pylist()
    by_trial: dict[str, list[int]] = {}
    for r in rows:
        by_trial.setdefault(r["trial_id"], []).append(r["step"])
    assert len(by_trial) == 4
    for steps in by_trial.values():
        assert sorted(steps) == [20, 40, 60, 80, 100]
    finals = [r for r in rows if r["step"] == 100]
    assert all(r["status"] == "completed" for r in finals)
    # A trial that had finished before the kill is not run again: its rows are its first attempt's.
    assert finished_first and all(r["attempt"] == 1 for r in rows if r["trial_id"] in finished_first)
    # In the files themselves (no deduplication), an attempt never writes a step twice, and
    # after compaction plain pyarrow sees exactly one row per (trial, step).
    raw = ds.dataset(results, partitioning="hive").to_table().to_pylist()
    keys = [(r["trial_id"], r["step"], r["attempt"]) for r in raw]
    assert len(keys) == len(set(keys))
    assert main(["compact", str(results)]) == 0
    compacted = ds.dataset(results, partitioning="hive").to_table().to_pylist()
    assert sorted((r["trial_id"], r["step"]) for r in compacted) == sorted((r["trial_id"], r["step"]) for r in rows)
    # Whole files only: every file in the store opens, and no temporary file is left behind.
    files = list((results / "experiment=killed").iterdir())
    assert not [f for f in files if f.name.startswith(".tmp")]
    ds.dataset(results, partitioning="hive").to_table()
