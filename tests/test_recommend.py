"""``lorasweep recommend``: the best configuration within a budget, from a known joint law."""
from __future__ import annotations

import json

import numpy as np
import pyarrow.parquet as pq
import pytest

from orchestrator.analysis import axes as flops
from orchestrator.analysis.synthetic import sweep_rows
from orchestrator.cli import main

GRID = {"model_params": [1e6, 4e6, 16e6, 64e6], "tokens_seen": [1e6, 4e6, 16e6, 64e6],
        "rank": [1, 4, 16, 64]}


def true_loss(n, t, r):
    return 1.5 * (n / 1e6) ** -0.3 + 1.2 * (t / 1e6) ** -0.25 + 0.3 * r ** -0.5 + 0.8


def adapter(n, r):  # the synthetic rows' adapter size
    return r * 2 * 64 * np.sqrt(n / 1e6)


def store(tmp_path, noise=0.03):
    rows = sweep_rows(GRID, {"eval_ce": lambda c: true_loss(c["model_params"],
                                                            c["tokens_seen"], c["rank"])},
                      noise=noise, experiment="j")
    part = tmp_path / "res" / "experiment=j"
    part.mkdir(parents=True)
    pq.write_table(rows.drop_columns(["experiment"]), part / "p.parquet")
    return str(tmp_path / "res")


def true_optimum(budget, n_max, t_max):
    n = np.geomspace(1e6, n_max, 400)[:, None, None]
    t = np.geomspace(1e6, t_max, 400)[None, :, None]
    r = np.array([1, 2, 4, 8, 16, 32, 64.0])[None, None, :]
    cost = flops.train_flops(n, adapter(n, r), t)
    loss = np.where(cost <= budget, true_loss(n, t, r), np.inf)
    return float(loss.min())


def test_recommendation_is_near_the_true_optimum_with_an_interval(tmp_path, capsys):
    root = store(tmp_path)
    out = tmp_path / "rec.json"
    budget = 1e16
    assert main(["recommend", root, "--experiment", "j", "--budget", str(budget),
                 "--bootstrap", "200", "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert "predicted eval_ce" in text and "FLOPs" in text
    rec = json.loads(out.read_text())
    cfg = rec["best"]["config"]
    assert set(cfg) == {"model_params", "tokens_seen", "rank"}
    assert rec["best"]["flops"] <= budget
    spent = flops.train_flops(cfg["model_params"], adapter(cfg["model_params"], cfg["rank"]),
                              cfg["tokens_seen"])
    assert spent <= budget * 1.01   # the regressed adapter size matches the rows' own
    best = true_optimum(budget, 64e6, 64e6)
    assert true_loss(cfg["model_params"], cfg["tokens_seen"], cfg["rank"]) <= best * 1.02
    lo, hi = rec["best"]["loss_ci"]
    assert lo <= rec["best"]["loss"] <= hi
    for axis, (a, b) in rec["best"]["config_ci"].items():
        assert a <= b


def test_budget_far_beyond_the_observed_flops_is_refused(tmp_path, capsys):
    root = store(tmp_path)
    assert main(["recommend", root, "--experiment", "j", "--budget", "1e20"]) == 2
    err = capsys.readouterr().err
    assert "lies far outside the fitted range" in err and "at most 10x" in err


def test_gpu_hours_give_a_token_budget(tmp_path, capsys):
    root = store(tmp_path)
    # 1 hour at ~5.6k tokens/s = 2e7 tokens: inside the observed 1e6..6.4e7
    assert main(["recommend", root, "--experiment", "j", "--gpu-hours", "1",
                 "--tokens-per-second", "5556", "--bootstrap", "100",
                 "--json", str(tmp_path / "r.json")]) == 0
    rec = json.loads((tmp_path / "r.json").read_text())
    assert rec["budget_kind"] == "tokens"
    assert rec["best"]["config"]["tokens_seen"] <= 3600 * 5556
    assert rec["best"]["config"]["model_params"] == pytest.approx(64e6)  # size costs no tokens


@pytest.mark.parametrize("argv, needle", [
    (["--budget", "1e16", "--gpu-hours", "1"], "either --budget"),
    ([], "either --budget"),
    (["--gpu-hours", "2"], "needs --tokens-per-second"),
    (["--budget", "-5"], "--budget: -5.0 must be positive"),
])
def test_bad_budget_arguments(tmp_path, capsys, argv, needle):
    root = store(tmp_path)
    assert main(["recommend", root, "--experiment", "j", *argv]) == 2
    assert needle in capsys.readouterr().err
