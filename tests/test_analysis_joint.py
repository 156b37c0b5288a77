"""Joint laws over two or three axes, computed axes, early-stopped trials and user laws."""
from __future__ import annotations

import argparse
import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from orchestrator.analysis import RECORD_KEYS, analyze, run
from orchestrator.analysis import joint_fit as jf
from orchestrator.analysis.cli import add_parser
from orchestrator.analysis.joint_laws import make
from orchestrator.analysis.laws import LAWS, Law, register_law
from orchestrator.analysis.synthetic import sweep_rows

GRID = {"model_params": [1e6, 4e6, 16e6, 64e6], "train_size": [500, 1000, 2000, 4000, 8000],
        "rank": [1, 4, 16, 64]}
AXES = ("model_params", "train_size", "rank")
MULT = {"alpha": 0.3, "beta": 0.2, "gamma": 0.1}
ADD = {"alpha": 0.35, "beta": 0.3, "gamma": 0.5}


def multiplicative(cfg):
    n, d, r = cfg["model_params"] / 1e6, cfg["train_size"] / 500, cfg["rank"].astype(float)
    return 2.0 * n ** -0.3 * d ** -0.2 * r ** -0.1 + 0.5


def additive(cfg):
    n, d, r = cfg["model_params"] / 1e6, cfg["train_size"] / 500, cfg["rank"].astype(float)
    return 0.8 + 1.5 * n ** -0.35 + 1.0 * d ** -0.3 + 1.0 * r ** -0.5


def rows(fn, rng_seed=0, **kw):
    return sweep_rows(GRID, {"eval_ce": fn}, rng_seed=rng_seed, **kw)


def joint_records(records, form=None):
    return [r for r in records if r["kind"] == "joint" and (form is None or r["form"] == form)]


def cli(argv) -> int:
    parser = argparse.ArgumentParser(prog="lorasweep")
    add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv)
    return args.func(args)


def write_store(root, table):
    part = root / "experiment=synthetic"
    part.mkdir(parents=True)
    pq.write_table(table.drop_columns(["experiment"]), part / "part-0.parquet")
    return root


# -- a law registered from outside the package ----------------------------------------------

def _inverse_model(theta, lx):
    theta = np.asarray(theta, dtype=float)
    return theta[..., 0, None] * np.exp(-lx) + theta[..., 1, None]


def _inverse_jac(theta, lx):
    return np.column_stack([np.exp(-lx), np.ones_like(lx)])


def _inverse_params(theta, x_ref):
    theta = np.asarray(theta, dtype=float)
    return {"a": theta[..., 0] * x_ref, "b": np.ones_like(theta[..., 0]), "c": theta[..., 1]}


def _inverse_solver(lx, W, S, Q, ybar, prev=None):
    """Weighted LS of y on (1/x', 1) from per-x sums: a user's own closed-form solver."""
    u = np.exp(-lx)
    Sw, Su, Suu = W.sum(1), (W * u).sum(1), (W * u * u).sum(1)
    Sy, Suy = S.sum(1), (S * u).sum(1)
    den = Sw * Suu - Su * Su
    a = (Sw * Suy - Su * Sy) / den
    c = (Sy - a * Su) / Sw
    return np.column_stack([a, c + ybar])


INVERSE = LAWS.get("inverse_x") or register_law(Law(
    name="inverse_x", formula="y = a / x + c", space="linear", theta_names=("a", "c"),
    lower=(-np.inf, -np.inf), upper=(np.inf, np.inf), model=_inverse_model, jac=_inverse_jac,
    to_params=_inverse_params, solver=_inverse_solver, exponent="b"))


def inverse_rows():
    from test_analysis import law_rows  # the one-axis fixture rows

    return law_rows({"eval_ce": lambda x: 2.0 / x + 0.5})


def test_a_law_registered_outside_fits_through_the_api():
    rec, = analyze(inverse_rows(), x="rank", y="eval_ce", forms=("inverse_x",), n_boot=200)
    assert rec["form"] == "inverse_x" and rec["verdict"] == "holds"
    assert rec["params"]["a"] == pytest.approx(2.0, rel=0.1)
    assert rec["params"]["c"] == pytest.approx(0.5, abs=0.05)
    lo, hi = rec["ci"]["a"]
    assert lo < 2.0 < hi


def test_a_law_registered_outside_fits_through_the_cli(tmp_path, capsys):
    root = tmp_path / "res"
    part = root / "experiment=exp"
    part.mkdir(parents=True)
    pq.write_table(inverse_rows().drop_columns(["experiment"]), part / "p.parquet")
    assert cli(["analyze", str(root), "--y", "eval_ce", "--law", "inverse_x",
                "--bootstrap", "100", "--report", str(tmp_path / "rep")]) == 0
    out = capsys.readouterr().out
    assert "inverse_x" in out and "holds" in out
    fits = json.loads((tmp_path / "rep" / "fits.json").read_text())
    assert fits[0]["form"] == "inverse_x" and fits[0]["params"]["a"] == pytest.approx(2, rel=0.1)


def test_registering_a_law_without_a_solver_is_refused():
    with pytest.raises(ValueError, match="solver"):
        register_law(Law(name="no_solver", formula="y", space="linear", theta_names=("c",),
                         lower=(0,), upper=(1,), model=_inverse_model, jac=_inverse_jac,
                         to_params=_inverse_params, solver=None))


# -- joint laws recover known exponents --------------------------------------------------------

# The additive form trades E against the slowest term: on this 80-cell grid at 2% noise its
# beta has a sampling sd of ~0.04 (13%) over draws, so the check allows 25% (~2 sd) and
# asks that the interval cover the truth. bench/joint_laws.py measures bias and coverage.
@pytest.mark.parametrize("form, fn, truth, noise, rel", [
    ("multiplicative", multiplicative, MULT, 0.05, 0.1), ("additive", additive, ADD, 0.02, 0.25)])
def test_joint_law_recovers_known_exponents(form, fn, truth, noise, rel):
    recs = joint_records(analyze(rows(fn, noise=noise), x=AXES, y="eval_ce", joint_forms=(form,),
                                 forms=("power",), n_boot=300), form)
    rec, = recs
    assert rec["verdict"] == "holds", rec["reasons"]
    assert rec["axes"] == list(AXES) and rec["bootstrap_unit"] == "configuration"
    for name, value in truth.items():
        assert rec["params"][name] == pytest.approx(value, rel=rel), name
        lo, hi = rec["ci"][name]
        assert lo < value < hi, (name, lo, hi)
    assert rec["r2"] > 0.9 and rec["n_configs"] == 80 and rec["n_points"] == 240


def test_the_generating_form_extrapolates_better():
    analysis = run(rows(additive, noise=0.02), x=AXES, y="eval_ce", forms=("power",),
                   n_boot=100)
    errs = {r["form"]: r["extrapolation_rel_error"] for r in joint_records(analysis.records)}
    assert errs["additive"] < errs["multiplicative"]
    cmp, = analysis.joint_comparison
    assert cmp["best"] == "additive" and "additive extrapolates better" in cmp["message"]
    assert joint_records(analysis.records)[0]["extrapolation_x"] == 64e6


def test_joint_fit_needs_two_values_on_every_axis():
    table = sweep_rows({"model_params": [1e6], "train_size": [500, 1000, 2000],
                        "rank": [1, 4, 16]}, {"eval_ce": multiplicative})
    recs = joint_records(analyze(table, x=AXES, y="eval_ce", n_boot=100))
    assert {r["verdict"] for r in recs} == {"insufficient"}
    assert "model_params has 1 distinct value" in recs[0]["message"]


def test_batched_solver_reaches_the_point_fit():
    table = rows(multiplicative)
    law = make("multiplicative", AXES)
    X = np.column_stack([table[a].to_numpy().astype(float) for a in AXES])
    from orchestrator.analysis.joint import configuration_points

    Xc, ly = configuration_points(X, table["eval_ce"].to_numpy(),
                                  table["config_hash"].to_numpy(zero_copy_only=False))
    p = jf.points(Xc, ly)
    theta = jf.fit_point(law, p)
    start = theta + np.r_[0.3, -0.3, 0.05, -0.05, 0.05]
    again = jf.solve_batch(law, p, start[None, :], iters=60)[0]
    best = jf.objective(law, p, theta)[0]
    assert jf.objective(law, p, again)[0] == pytest.approx(best, rel=1e-3)
    assert np.allclose(again[-3:], theta[-3:], atol=2e-3)


def test_joint_records_reach_fits_json_and_the_report(tmp_path, capsys):
    root = write_store(tmp_path / "res", rows(multiplicative))
    assert cli(["analyze", str(root), "--x", "model_params,train_size,rank", "--y", "eval_ce",
                "--bootstrap", "100", "--report", str(tmp_path / "rep")]) == 0
    out = capsys.readouterr().out
    assert "exponents [95% CI]" in out and "extrapolates better" in out
    fits = json.loads((tmp_path / "rep" / "fits.json").read_text())
    assert all(tuple(r) == RECORD_KEYS for r in fits)
    joint = [r for r in fits if r["kind"] == "joint"]
    assert {r["form"] for r in joint} == {"additive", "multiplicative"}
    for r in joint:
        assert r["x"] == "model_params,train_size,rank"
        assert set(r["ci"]) == set(r["params"]) and r["extrapolation_rel_error"] is not None
    report = (tmp_path / "rep" / "report.md").read_text()
    assert "## Joint laws" in report and "extrapolates better" in report


def test_cli_rejects_an_unknown_joint_form(tmp_path):
    from orchestrator.errors import UsageError

    root = write_store(tmp_path / "res", rows(multiplicative))
    with pytest.raises(UsageError, match="unknown joint form 'cubic'"):
        cli(["analyze", str(root), "--x", "model_params,rank", "--joint-law", "cubic"])


# -- computed axes -------------------------------------------------------------------------------

def test_train_flops_follow_the_lora_convention():
    table = rows(multiplicative, steps=(10, 20))
    analysis = run(table, x="train_flops", y="eval_ce", forms=("power",), n_boot=100)
    s, = analysis.series[("eval_ce", "train_flops")]
    final = table.filter(pa.compute.equal(table["step"], 20))
    expected = final["tokens_seen"].to_numpy() * (4.0 * final["model_params"].to_numpy()
                                                  + 6.0 * final["trainable_params"].to_numpy())
    assert sorted(s.x) == pytest.approx(sorted(expected))
    assert analysis.records[0]["verdict"] == "holds"


def test_train_flops_need_their_source_columns():
    from orchestrator.errors import UsageError

    table = rows(multiplicative).drop_columns(["tokens_seen"])
    with pytest.raises(UsageError, match="computed from model_params, trainable_params, "
                                         "tokens_seen; missing or not numeric: tokens_seen"):
        run(table, x="train_flops", y="eval_ce")


def test_alpha_and_tokens_seen_are_axes():
    table = sweep_rows({"alpha": [4.0, 8.0, 16.0, 32.0]},
                       {"eval_ce": lambda c: 3.0 * (c["alpha"] / 4.0) ** -0.2})
    rec, = analyze(table, x="alpha", y="eval_ce", forms=("power",), n_boot=100)
    assert rec["params"]["b"] == pytest.approx(0.2, abs=0.05)
    table = sweep_rows({"tokens_seen": [1e5, 4e5, 1.6e6, 6.4e6]},
                       {"eval_ce": lambda c: 3.0 * (c["tokens_seen"] / 1e5) ** -0.15})
    rec, = analyze(table, x="tokens_seen", y="eval_ce", forms=("power",), n_boot=100)
    assert rec["params"]["b"] == pytest.approx(0.15, abs=0.03)


# -- early-stopped trials ------------------------------------------------------------------------

def _with_stopped(table, every=4):
    """Every ``every``-th trial stopped early: status stopped, a far worse final value."""
    status = table["status"].to_pylist()
    ce = table["eval_ce"].to_pylist()
    ids = table["trial_id"].to_pylist()
    stopped = sorted(set(ids))[::every]
    for i, t in enumerate(ids):
        if t in stopped:
            status[i], ce[i] = "stopped", ce[i] * 3
    table = table.set_column(table.column_names.index("status"), "status", pa.array(status))
    return table.set_column(table.column_names.index("eval_ce"), "eval_ce", pa.array(ce)), \
        len(stopped)


def test_stopped_trials_are_left_out_of_final_fits_unless_asked(tmp_path):
    table, n_stopped = _with_stopped(rows(multiplicative))
    kept = run(table, x="rank", y="eval_ce", forms=("power",), n_boot=100)
    assert kept.meta["stopped_left_out"] == n_stopped
    assert kept.records[0]["n_points"] == 240 - n_stopped
    every = run(table, x="rank", y="eval_ce", forms=("power",), n_boot=100,
                include_stopped=True)
    assert every.records[0]["n_points"] == 240 and every.meta["stopped_left_out"] == 0
    root = write_store(tmp_path / "res", table)
    assert cli(["analyze", str(root), "--y", "eval_ce", "--law", "power", "--bootstrap", "100",
                "--report", str(tmp_path / "rep")]) == 0
    report = (tmp_path / "rep" / "report.md").read_text()
    assert f"left out of these final-point fits: {n_stopped}" in report
