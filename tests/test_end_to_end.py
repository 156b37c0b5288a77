"""End to end through the CLI: a real sweep on embedded Ray writes rows pyarrow can read."""
from __future__ import annotations

import math
from pathlib import Path

import pyarrow.dataset as ds
import pytest

from orchestrator.cli import main

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_two_trial_sweep_writes_parquet_rows(tmp_path, ray_shutdown, capsys):
    results = tmp_path / "results"
    code = main([
        "run", str(ROOT / "search_spaces" / "quickstart.yaml"), "--num-cpus", "2",
        "--set", "lora.rank={grid: [2, 8]}", "--set", "lora.scaling=rslora",
        "--set", "train.steps=40", "--set", f"results.path={results}",
    ])
    assert code == 0
    table = ds.dataset(results, partitioning="hive").to_table()
    names = set(table.column_names)
    expected = {"experiment", "trial_id", "status", "model", "rank", "alpha", "scaling", "scale_factor", "step",
                "tokens_seen", "train_loss", "eval_ce", "eval_ppl", "eval_acc", "wall_time_s", "timestamp"}
    assert expected <= names
    rows = table.to_pylist()
    assert len(rows) == 2 * 2  # 2 trials x evaluations at steps 20 and 40
    assert len({(r["trial_id"], r["step"]) for r in rows}) == len(rows)
    assert {r["rank"] for r in rows} == {2, 8} and {r["experiment"] for r in rows} == {"quickstart"}
    for r in rows:
        for col in ("eval_ce", "eval_ppl", "eval_acc", "train_loss"):
            assert math.isfinite(r[col])
        assert r["eval_ppl"] == pytest.approx(math.exp(r["eval_ce"]))
        assert 0.0 <= r["miub"] <= math.log(2) and r["miub_estimator"] == "jsd_topk"
        assert len(r["miub_layers"]) == 4  # q_proj and v_proj of zoo/llama-xs's 2 layers
    assert sorted(r["status"] for r in rows) == ["completed", "completed", "running", "running"]
    out = capsys.readouterr().out
    assert "quickstart: 2 trials, 4 rows" in out
