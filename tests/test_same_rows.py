"""The same spec and seed give the same rows as the code before the spec/search restructuring.

``tests/data/quickstart_rows_before_refactor.json`` holds the rows of the sweep below as
recorded with that code, every column but timing, host and environment. A change that moves
code without meaning to change behaviour must reproduce them.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import pyarrow.dataset as ds
import pytest

from orchestrator.cli import main

ROOT = Path(__file__).resolve().parents[1]
RECORDED = ROOT / "tests" / "data" / "quickstart_rows_before_refactor.json"
# Timing, host and environment: not recorded.
SKIP = {"trial_id", "timestamp", "wall_time_s", "node", "git_commit", "package_versions", "run_id"}
# config_hash covers every field of a trial config, so a new spec field (with its default)
# changes every hash by design: compared as a grouping of rows instead of by value.
# Columns added since the recording are new measurements or annotations, null where unused.
ADDED = {"stop_reason", "optimizer", "curve_pred", "curve_lo", "curve_hi", "miub_se", "miub_jsd_topk", "miub_jsd_full", "miub_club_gauss"}
SWEEP = ["--set", "lora.rank={grid: [2, 8]}", "--set", "train.steps=20", "--set", "train.eval_every=10",
         "--set", "data.train_size=256", "--set", "data.eval_size=64", "--num-cpus", "2"]


def _same(a, b) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-9) or (math.isnan(a) and math.isnan(b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return a == b


@pytest.mark.slow
def test_quickstart_rows_match_the_recorded_ones(tmp_path, ray_shutdown):
    results = tmp_path / "results"
    assert main(["run", str(ROOT / "search_spaces" / "quickstart.yaml"), *SWEEP,
                 "--set", f"results.path={results}"]) == 0
    recorded = json.loads(RECORDED.read_text())
    rows = ds.dataset(results, partitioning="hive").to_table().to_pylist()
    rows = sorted(rows, key=lambda r: (r["rank"], r["scaling"], r["step"]))
    assert len(rows) == len(recorded) == 8
    assert _groups(rows) == _groups(recorded)
    for got, want in zip(rows, recorded):
        for column, value in want.items():
            if column == "config_hash":
                continue
            assert column in got, f"column {column} is gone"
            value_now = json.loads(json.dumps(got[column], default=str))
            assert _same(value_now, value), f"{column}: {value_now!r} != recorded {value!r} (rank {want['rank']})"
        assert set(got) - set(want) <= SKIP | ADDED
        assert got["stop_reason"] is None and got["optimizer"]


def _groups(rows: list[dict]) -> list[list[int]]:
    """Which rows share a config_hash, as sorted lists of row positions."""
    by_hash: dict[str, list[int]] = {}
    for i, row in enumerate(rows):
        by_hash.setdefault(row["config_hash"], []).append(i)
    return sorted(by_hash.values())
