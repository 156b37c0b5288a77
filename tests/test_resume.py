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
        while time.monotonic() < deadline:  # kill once the first trial has finished
            time.sleep(0.5)
            try:
                if any(r["status"] == "completed" for r in read_results(results).to_pylist()):
                    break
            except Exception:
                continue
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
    # Whole files only: every file in the store opens, and no temporary file is left behind.
    files = list((results / "experiment=killed").iterdir())
    assert not [f for f in files if f.name.startswith(".tmp")]
    ds.dataset(results, partitioning="hive").to_table()
