"""A sweep's outcome is never misreported: exit codes, one-line summaries, one writer per experiment."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pyarrow.dataset as ds
import pytest

from orchestrator.cli import main
from orchestrator.outcome import Outcome
from orchestrator.run_lock import ExperimentLock, stop_leftover_ray
from orchestrator.errors import UsageError

ROOT = Path(__file__).resolve().parents[1]
QUICKSTART = str(ROOT / "search_spaces" / "quickstart.yaml")
TINY = ["--set", "train.steps=4", "--set", "train.eval_every=2", "--set", "data.train_size=128",
        "--set", "data.eval_size=32", "--num-cpus", "2"]


def test_exit_status_from_known_outcomes():
    assert Outcome(2, {"a": "completed", "b": "stopped"}).exit_status() == 0
    assert Outcome(2, {"a": "completed", "b": "diverged"}, {"b": "diverged at step 3: x"}).exit_status() == 1
    assert Outcome(2, {"a": "error", "b": "running"}).exit_status() == 130  # interrupted wins
    assert Outcome(3, {"a": "completed", "b": "completed"}).exit_status() == 130  # a trial never started
    line = Outcome(2, {"a": "completed", "b": "error"}, {"b": "ValueError: boom"}).failure_line("/x/exp")
    assert line == "1 of 2 trials failed: b error (ValueError: boom); logs: /x/exp/trial_<id>/ (error.txt for errors)"


def test_a_second_holder_of_the_lock_is_refused_and_a_dead_one_taken_over(tmp_path):
    code = ("import sys, time; from orchestrator.run_lock import ExperimentLock\n"
            "with ExperimentLock(sys.argv[1], 'exp'):\n    print('held', flush=True); time.sleep(60)\n")
    holder = subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], stdout=subprocess.PIPE, text=True,
                              env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(UsageError, match=rf"experiment 'exp' is being run by another lorasweep run \(pid {holder.pid}"):
            with ExperimentLock(tmp_path, "exp"):
                pass
    finally:
        holder.kill()  # like a SIGKILLed driver: no chance to release
        holder.wait()
    with ExperimentLock(tmp_path, "exp") as lock:
        assert lock.stale is not None and lock.stale["pid"] == holder.pid
    with ExperimentLock(tmp_path, "exp") as lock:
        assert lock.stale is None  # released cleanly last time


def test_leftover_processes_are_stopped_only_if_they_are_ray_s(tmp_path):
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        stale = {"host": os.uname().nodename, "pid": 1, "ray_pids": [sleeper.pid]}
        assert stop_leftover_ray(stale) == []  # not a Ray process: left alone
        assert sleeper.poll() is None
    finally:
        sleeper.kill()
        sleeper.wait()


FAILING_ESTIMATOR = (
    "from trainables.miub import Estimator, register_estimator\n"
    "@register_estimator('always_fails')\n"
    "class AlwaysFails(Estimator):\n"
    "    def batch_stats(self, h, g, mask):\n"
    "        raise RuntimeError('this estimator fails on purpose')\n"
    "    def finalize(self, stats):\n"
    "        return 0.0\n"
)


@pytest.mark.slow
def test_failed_trials_exit_1_naming_them_and_reruns_need_a_choice(tmp_path, monkeypatch, ray_shutdown, capsys):
    (tmp_path / "failing_estimator.py").write_text(FAILING_ESTIMATOR)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")]))
    results = tmp_path / "results"
    args = ["run", QUICKSTART, *TINY, "--set", "lora.rank={grid: [2]}", "--set", "lora.scaling={grid: [standard]}",
            "--set", "metrics.miub.estimator=always_fails", "--set", "metrics.miub.imports=[failing_estimator]",
            "--set", "failures.max_failures=0", "--set", f"results.path={results}"]
    assert main(args) == 1
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("lorasweep: ")]
    assert len(lines) == 1 and "1 of 1 trials failed" in lines[0] and "this estimator fails on purpose" in lines[0]
    assert "Traceback" not in err.split("lorasweep: ")[-1]
    statuses = ds.dataset(results, partitioning="hive").to_table(columns=["status"])["status"].to_pylist()
    assert statuses == ["error"]

    import ray

    ray.shutdown()
    assert main(args) == 2  # the experiment has rows: --resume, a new name or --append
    assert "allowed: --resume (continue it), a new name (--set name=...), or --append" in capsys.readouterr().err


@pytest.mark.slow
def test_a_diverged_trial_exits_1_and_the_good_one_completes(tmp_path, ray_shutdown, capsys):
    results = tmp_path / "results"
    args = ["run", QUICKSTART, *TINY, "--set", "lora.rank={grid: [2]}", "--set", "lora.scaling={grid: [standard]}",
            "--set", "train.lr={grid: [0.003, 1e30]}", "--set", f"results.path={results}"]
    assert main(args) == 1
    line = [line for line in capsys.readouterr().err.splitlines() if line.startswith("lorasweep: ")][-1]
    assert "1 of 2 trials failed" in line and "diverged (diverged at step" in line
    table = ds.dataset(results, partitioning="hive").to_table().to_pylist()
    last = {}
    for row in sorted(table, key=lambda r: r["step"] or 0):
        last[row["lr"]] = row
    assert last[0.003]["status"] == "completed" and last[1e30]["status"] == "diverged"
    assert last[1e30]["stop_reason"].startswith("diverged at step")
    assert len({r["run_id"] for r in table}) == 1

    import ray

    ray.shutdown()
    assert main([*args, "--append"]) == 1
    run_ids = ds.dataset(results, partitioning="hive").to_table(columns=["run_id"])["run_id"].to_pylist()
    assert len(set(run_ids)) == 2


def test_what_would_fail_every_trial_is_reported_before_ray_starts(tmp_path, capsys):
    import sys as _sys

    (tmp_path / "a_file").write_text("x")
    (tmp_path / "model_dir").mkdir()
    (tmp_path / "model_dir" / "config.json").write_text("{}")
    cases = {
        f"model.name={tmp_path / 'missing_model'}": "no such directory",
        f"model.name={tmp_path / 'model_dir'}": "has no a tokenizer",
        f"results.path={tmp_path / 'a_file'}": "is a file; allowed: a directory",
        "data.train_size=8": "train.batch_size: 16 is more than data.train_size (8)",
        "train.seq_len=8": "train.seq_len: 8 is too short for synthetic/kv-recall at complexity 2 with zoo/llama-xs",
    }
    for override, message in cases.items():
        assert main(["run", QUICKSTART, "--set", override, "--set", f"name=pre{len(message)}"]) == 2
        err = capsys.readouterr().err
        assert message in err, (override, err)
        assert "Traceback" not in err
    assert "ray" not in _sys.modules or not __import__("ray").is_initialized()
