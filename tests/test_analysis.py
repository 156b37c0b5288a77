"""Scaling-law analysis: known laws are recovered, bad trends fail, thin data is insufficient."""
from __future__ import annotations

import argparse
import json
import subprocess
import sys

import matplotlib.image as mpimg
import numpy as np
import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from orchestrator.analysis import RECORD_KEYS, analyze, rslora_check, run
from orchestrator.analysis.cli import add_parser
from orchestrator.analysis.fit import fit_point, prepare
from orchestrator.analysis.laws import LAWS
from orchestrator.analysis.resample import resample_counts
from orchestrator.analysis.solve import irls
from orchestrator.errors import UsageError

RANKS = [1, 2, 4, 8, 16, 32, 64]


def law_rows(metrics, xs=RANKS, seeds=(0, 1, 2), noise=0.05, seed=0, x="rank",
             experiment="exp", steps=(50, 100), extra=None, with_hash=True):
    """Result rows where each metric's final value is ``fn(x) * (1 + noise * N(0, 1))``.

    ``metrics``: {name: fn}; for eval_acc the noise and the step factor apply to the error
    ``1 - acc``. Earlier steps are 20% worse, so ``final`` must pick the last step.
    ``extra``: {column: value or fn(x, seed)} added to every row.
    """
    def scaled(m, v, factor):
        return 1 - (1 - v) * factor if m == "eval_acc" else v * factor

    rng = np.random.default_rng(seed)
    rows = []
    for xv in xs:
        for s in seeds:
            final = {m: scaled(m, fn(xv), 1 + noise * rng.standard_normal())
                     for m, fn in metrics.items()}
            cfg = {c: (v(xv, s) if callable(v) else v) for c, v in (extra or {}).items()}
            for step in steps:
                worse = 1.2 if step != max(steps) else 1.0
                row = {"experiment": experiment, "trial_id": f"{x}{xv}-{cfg}-s{s}",
                       "status": "completed", "model": "zoo/llama-xs", "rank": 8,
                       "model_params": 1_000_000, "train_size": 1000, "complexity": 4,
                       "scaling": "standard", "alpha": 16.0, "seed": s, "step": step}
                row[x] = xv
                row.update(cfg)
                row.update({m: scaled(m, v, worse) for m, v in final.items()})
                if with_hash:
                    row["config_hash"] = f"{x}={xv}|{sorted(cfg.items())}"
                rows.append(row)
    return pa.Table.from_pylist(rows)


def known(x):
    return 2.0 * x ** -0.5 + 0.1


def write_store(root, tables: dict):
    """Hive layout as the store writes it: root/experiment=NAME/part-0.parquet."""
    for name, table in tables.items():
        part = root / f"experiment={name}"
        part.mkdir(parents=True)
        pq.write_table(table.drop_columns(["experiment"]), part / "part-0.parquet")
    return root


def cli(argv) -> int:
    parser = argparse.ArgumentParser(prog="lorasweep")
    add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv)
    return args.func(args)


def by_form(records):
    return {r["form"]: r for r in records}


# -- a known law is recovered ---------------------------------------------------------------

def test_recovers_known_saturating_law():
    # For this design (7 ranks x 3 seeds, 5% noise) the exponent's sampling spread is ~0.033
    # for this estimator and for plain least squares alike, so 0.05 is ~1.5 sigma; the draw
    # is fixed by its seed, and the next test checks the estimator over many draws.
    table = law_rows({"miub": known}, seed=1)
    rec = by_form(analyze(table, y="miub", n_boot=1000))["saturating"]
    assert abs(rec["params"]["b"] - 0.5) < 0.05
    assert rec["ci"]["b"][0] <= 0.5 <= rec["ci"]["b"][1]
    assert rec["verdict"] == "holds"
    assert rec["bootstrap_unit"] == "seed" and rec["n_points"] == 21
    assert rec["spearman_rho"] < 0 and rec["aic_vs_flat"] < -2


def test_exponent_is_unbiased_and_interval_calibrated_over_many_draws():
    bs, covered = [], 0
    for seed in range(20):
        rec = analyze(law_rows({"miub": known}, seed=100 + seed), y="miub",
                      forms="saturating", n_boot=200)[0]
        assert rec["verdict"] == "holds"
        bs.append(rec["params"]["b"])
        covered += rec["ci"]["b"][0] <= 0.5 <= rec["ci"]["b"][1]
    bs = np.array(bs)
    assert abs(bs.mean() - 0.5) < 0.02
    assert np.mean(np.abs(bs - 0.5) < 0.05) >= 0.75
    assert covered >= 16  # nominal 95%: 19 of 20


def test_noise_free_law_is_exact_and_extrapolates():
    rec = by_form(analyze(law_rows({"miub": known}, noise=0.0), y="miub", n_boot=100))
    sat = rec["saturating"]
    assert sat["params"]["a"] == pytest.approx(2.0, rel=1e-4)
    assert sat["params"]["b"] == pytest.approx(0.5, rel=1e-4)
    assert sat["params"]["c"] == pytest.approx(0.1, rel=1e-3)
    assert sat["r2"] == pytest.approx(1.0, abs=1e-8)
    assert sat["extrapolation_rel_error"] < 1e-4 and sat["extrapolation_x"] == 64
    # the pure power law misses the offset c, which shows when extrapolating
    assert rec["power"]["extrapolation_rel_error"] > 0.05


def test_vectorised_bootstrap_solver_matches_least_squares():
    x = np.repeat(np.array(RANKS, float), 3)
    y = known(x) * (1 + 0.05 * np.random.default_rng(3).standard_normal(len(x)))
    for name in ("saturating", "power"):
        law = LAWS[name]
        ax = prepare(law, x, y)
        fit = fit_point(law, ax)
        theta = irls(law, ax.lx, ax.k_idx, ax.ys, np.ones((1, len(x))), fit.f_scale,
                     sw=ax.sw, iters=30)[0]
        assert np.allclose(theta, fit.theta, rtol=2e-3, atol=2e-3), name


# -- trends that do not follow the law fail -------------------------------------------------

@pytest.mark.parametrize("fn", [lambda x: 1.0 + 0 * x, lambda x: 0.1 + 0.2 * x ** 0.3],
                         ids=["flat", "reversed"])
def test_flat_and_reversed_trends_fail(fn):
    for rec in analyze(law_rows({"miub": fn}), y="miub", n_boot=300):
        assert rec["verdict"] == "fails", rec["message"]
        assert rec["reasons"]


def test_reversed_trend_fails_on_the_sign_of_b():
    rec = by_form(analyze(law_rows({"miub": lambda x: 0.1 + 0.2 * x ** 0.3}), y="miub",
                          n_boot=300))["saturating"]
    assert rec["params"]["b"] < 0 and rec["spearman_rho"] > 0
    assert any("CI of b" in r for r in rec["reasons"])


def test_accuracy_is_fitted_as_its_error():
    table = law_rows({"eval_acc": lambda x: 1 - known(x) / 2.2})
    rec = by_form(analyze(table, y="eval_acc", n_boot=300))["saturating"]
    assert rec["target"] == "1 - eval_acc" and rec["expected_trend"] == "falls"
    assert rec["params"]["b"] == pytest.approx(0.5, abs=0.1)
    assert rec["verdict"] == "holds"


def test_loss_is_expected_to_rise_with_complexity():
    table = law_rows({"eval_ce": lambda k: 0.1 + 0.2 * k ** 0.5}, xs=[2, 4, 8, 16, 32],
                     x="complexity")
    for rec in analyze(table, x="complexity", y="eval_ce", n_boot=300):
        assert rec["expected_trend"] == "rises"
        assert rec["params"]["b"] < 0 and rec["verdict"] == "holds", rec["message"]


# -- too little data is insufficient, never a traceback -------------------------------------

def test_two_points_are_insufficient():
    for rec in analyze(law_rows({"miub": known}, xs=[1, 2]), y="miub", n_boot=100):
        assert rec["verdict"] == "insufficient"
        assert "only 2 distinct rank" in rec["message"]
        assert rec["params"] is None and rec["ci"] is None


def test_nan_values_are_left_out_and_all_nan_is_insufficient():
    nan_at_64 = law_rows({"miub": lambda x: np.nan if x == 64 else known(x)})
    rec = by_form(analyze(nan_at_64, y="miub", n_boot=200))["saturating"]
    assert rec["n_points"] == 18 and rec["n_dropped"] == 3 and rec["n_x"] == 6
    assert rec["verdict"] == "holds" and "3 trial(s)" in rec["message"]
    all_nan = law_rows({"miub": lambda x: np.nan})
    for rec in analyze(all_nan, y="miub", n_boot=100):
        assert rec["verdict"] == "insufficient" and "no trial has a finite miub" in rec["message"]


def test_empty_selection_is_insufficient_in_the_api():
    records = analyze(law_rows({"miub": known}), y="miub", experiment="nope", n_boot=100)
    assert records and all(r["verdict"] == "insufficient" for r in records)
    assert "no rows selected for experiment 'nope'" in records[0]["message"]


def test_error_rows_are_ignored():
    table = law_rows({"miub": known})
    # error rows normally carry null metrics; a value here shows they are dropped by status
    broken = pa.Table.from_pylist([{**row, "trial_id": row["trial_id"] + "-err",
                                    "status": "error", "miub": 100.0}
                                   for row in table.slice(0, 6).to_pylist()],
                                  schema=table.schema)
    clean = analyze(table, y="miub", n_boot=100)
    mixed = run(pa.concat_tables([table, broken]), y="miub", n_boot=100)
    assert [r["params"] for r in mixed.records] == [r["params"] for r in clean]
    assert mixed.records[0]["n_points"] == 21 and mixed.records[0]["n_dropped"] == 0
    assert mixed.meta["statuses"] == {"completed": 42, "error": 6}


def test_unknown_column_raises_usage_error_naming_it():
    table = law_rows({"miub": known})
    with pytest.raises(UsageError) as err:
        analyze(table, y=("miub", "no_such_metric"), by="nor_this")
    text = "\n".join(err.value.problems)
    assert "--y: unknown column 'no_such_metric'" in text
    assert "--by: unknown column 'nor_this'" in text
    with pytest.raises(UsageError, match="'model' is not numeric"):
        analyze(table, x="model", y="miub")


# -- selection ------------------------------------------------------------------------------

def test_best_step_takes_the_lowest_eval_ce_row():
    table = law_rows({"eval_ce": known, "miub": known}, steps=(50, 100))
    # make the last step worse than the first for every trial: best must pick step 50
    ce = np.array(table["eval_ce"].to_pylist())
    step = np.array(table["step"].to_pylist())
    table = table.set_column(table.column_names.index("eval_ce"), "eval_ce",
                             pa.array(np.where(step == 100, ce * 2, ce)))
    final = by_form(analyze(table, y="eval_ce", step="final", n_boot=100))["power"]
    best = by_form(analyze(table, y="eval_ce", step="best", n_boot=100))["power"]
    # step 50 rows are 1.2x the final law, step 100 rows 2x: a = 2.4 vs 4.0
    assert best["params"]["a"] == pytest.approx(2.4 * final["params"]["a"] / 4.0, rel=0.05)


def test_a_retried_trial_counts_once_with_its_latest_attempt():
    good = law_rows({"miub": known}).append_column("attempt", pa.array([2] * 42, pa.int32()))
    stale = law_rows({"miub": lambda x: 5.0 + 0 * x}, seed=7)
    stale = stale.append_column("attempt", pa.array([1] * 42, pa.int32()))
    records = analyze(pa.concat_tables([stale, good]), y="miub", n_boot=100)
    assert records == analyze(good, y="miub", n_boot=100)


def test_a_trial_that_ended_in_error_is_left_out_but_a_retried_one_stays():
    from orchestrator.analysis.select import reduce_steps

    table = law_rows({"miub": known}, xs=(1, 2), seeds=(0,), steps=(50, 100))
    trials = table["trial_id"].to_pylist()
    steps = table["step"].to_pylist()
    status = ["error" if (t == trials[0] and st == 100) else "completed" for t, st in zip(trials, steps)]
    failed = table.set_column(table.column_names.index("status"), "status", pa.array(status))
    kept = reduce_steps(failed)
    assert kept["trial_id"].to_pylist() == [trials[-1]]  # not trial 1's step-50 row as its "final"
    # An error row followed by a later step (a retried attempt) does not drop the trial.
    status = ["error" if (t == trials[0] and st == 50) else "completed" for t, st in zip(trials, steps)]
    retried = table.set_column(table.column_names.index("status"), "status", pa.array(status))
    assert sorted(reduce_steps(retried)["trial_id"].to_pylist()) == sorted(set(trials))


def test_configurations_without_config_hash_are_derived_from_columns():
    with_hash = analyze(law_rows({"miub": known}), y="miub", n_boot=200)
    without = analyze(law_rows({"miub": known}, with_hash=False), y="miub", n_boot=200)
    assert without[0]["bootstrap_unit"] == "seed" and without[0]["n_configs"] == 7
    assert [r["ci"] for r in without] == [r["ci"] for r in with_hash]


def test_groups_are_analysed_separately():
    table = pa.concat_tables([
        law_rows({"miub": known}, extra={"scaling": "rslora"}),
        law_rows({"miub": lambda x: 1.0 + 0 * x}, seed=1, extra={"scaling": "standard"})])
    records = analyze(table, y="miub", by="scaling", forms="saturating", n_boot=200)
    verdicts = {r["group"]["scaling"]: r["verdict"] for r in records}
    assert verdicts == {"rslora": "holds", "standard": "fails"}


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(0, 5), min_size=1, max_size=40), st.integers(1, 20))
def test_resampling_keeps_every_stratum_size(strata, n_boot):
    strata = np.array(strata)
    counts = resample_counts(strata, n_boot, np.random.default_rng(0))
    assert counts.shape == (n_boot, len(strata))
    for s in np.unique(strata):
        assert np.all(counts[:, strata == s].sum(1) == np.sum(strata == s))


def test_stability_and_agreement_with_accuracy():
    table = law_rows({"eval_ce": known, "eval_acc": lambda x: 1 - known(x) / 2.2}, noise=0.02)
    recs = {r["metric"]: r for r in analyze(table, y=("eval_ce", "eval_acc"), n_boot=100)}
    ce = np.array(table.filter(pa.compute.equal(table["step"], 100))["eval_ce"].to_pylist())
    by_cfg = ce.reshape(7, 3)
    expected_cv = np.mean(by_cfg.std(axis=1, ddof=1) / by_cfg.mean(axis=1))
    assert recs["eval_ce"]["stability_cv"] == pytest.approx(expected_cv, rel=1e-9)
    # CE falls exactly as accuracy rises across the 7 configurations
    assert recs["eval_ce"]["kendall_tau_vs_acc"] == pytest.approx(-1.0)
    assert recs["eval_acc"]["kendall_tau_vs_acc"] == pytest.approx(1.0)


# -- rsLoRA vs standard -----------------------------------------------------------------------

def rule_rows(std_slope, rs_slope):
    def ce(slope):
        return lambda r: 2.0 + slope * np.log2(r)
    return pa.concat_tables([
        law_rows({"eval_ce": ce(std_slope)}, noise=0.02, extra={"scaling": "standard"}),
        law_rows({"eval_ce": ce(rs_slope)}, noise=0.02, seed=1, extra={"scaling": "rslora"})])


def test_rslora_check_tells_apart_a_rule_that_alone_improves():
    rec = rslora_check(rule_rows(0.0, -0.1), n_boot=500)[0]
    assert rec["rslora"]["ci"][1] < 0                       # rsLoRA improves with rank
    assert rec["standard"]["ci"][0] < 0 < rec["standard"]["ci"][1]
    assert rec["difference"]["value"] == pytest.approx(-0.1, abs=0.02)
    assert rec["differ"] is True and rec["verdict"] == "differ"


def test_rslora_check_finds_no_difference_when_rules_agree():
    rec = rslora_check(rule_rows(-0.1, -0.1), n_boot=500)[0]
    assert rec["difference"]["ci"][0] < 0 < rec["difference"]["ci"][1]
    assert rec["differ"] is False and rec["verdict"] == "no difference"


def test_rslora_check_needs_both_rules():
    rec = rslora_check(law_rows({"eval_ce": known}), n_boot=100)[0]
    assert rec["verdict"] == "insufficient" and "rslora rows" in rec["message"]


# -- report directory -------------------------------------------------------------------------

def test_report_directory_has_markdown_json_and_a_png_per_metric(tmp_path):
    metrics = {"miub": known, "eval_ce": lambda x: 1 + known(x),
               "eval_ppl": lambda x: np.exp(1 + known(x)),
               "eval_acc": lambda x: 1 - known(x) / 2.2}
    table = pa.concat_tables([law_rows(metrics, extra={"scaling": "standard"}),
                              law_rows(metrics, seed=1, extra={"scaling": "rslora"})])
    records = analyze(table, report_dir=tmp_path, n_boot=200)
    fits = json.loads((tmp_path / "fits.json").read_text())
    assert fits == json.loads(json.dumps(records))
    assert len(fits) == 4 * 2
    for rec in fits:
        assert tuple(rec) == RECORD_KEYS
        assert set(rec["params"]) == set(rec["ci"]) == {"a", "b", "c"}
        assert all(len(v) == 2 and v[0] <= v[1] for v in rec["ci"].values())
        assert rec["verdict"] in ("holds", "fails", "insufficient")
    rs = json.loads((tmp_path / "rslora.json").read_text())
    assert rs[0]["verdict"] in ("differ", "no difference")
    md = (tmp_path / "report.md").read_text()
    for heading in ("## Verdicts", "## Fits", "## Stability", "## rsLoRA", "## Plots"):
        assert heading in md
    for metric in metrics:
        png = tmp_path / f"{metric}_vs_rank.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        image = mpimg.imread(png)
        assert image.shape[0] > 200 and image.shape[1] > 300
        assert f"({png.name})" in md


# -- CLI ----------------------------------------------------------------------------------------

def test_cli_reads_a_hive_store_and_check_passes(tmp_path, capsys):
    root = write_store(tmp_path / "results", {"good": law_rows({"miub": known}),
                                              "flat": law_rows({"miub": lambda x: 1 + 0 * x})})
    ds = pads.dataset(root, partitioning="hive")
    assert by_form(analyze(ds, y="miub", experiment="good", n_boot=100))["saturating"][
        "verdict"] == "holds"
    code = cli(["analyze", str(root), "--experiment", "good", "--y", "miub", "--check",
                "--bootstrap", "100", "--report", str(tmp_path / "rep")])
    out = capsys.readouterr().out
    assert code == 0
    assert "saturating" in out and "holds" in out and "report written to" in out
    assert (tmp_path / "rep" / "fits.json").exists()


def test_cli_check_exits_1_when_a_law_fails(tmp_path, capsys):
    root = write_store(tmp_path / "results", {"flat": law_rows({"miub": lambda x: 1 + 0 * x})})
    assert cli(["analyze", str(root), "--y", "miub", "--bootstrap", "100"]) == 0
    assert cli(["analyze", str(root), "--y", "miub", "--check", "--bootstrap", "100"]) == 1
    assert "fails" in capsys.readouterr().out


@pytest.mark.parametrize("argv, needle", [
    (["--y", "miub,bogus"], "--y: unknown column 'bogus'"),
    (["--y", "miub", "--by", "bogus"], "--by: unknown column 'bogus'"),
    (["--y", "miub", "--x", "lr"], "--x: 'lr' is not an analysis axis"),
    (["--y", "miub", "--experiment", "absent"], "experiments present: exp"),
    (["--y", "miub", "--report", "/dev/null/report"], "--report: cannot create directory '/dev/null/report'"),
])
def test_cli_bad_input_raises_usage_error(tmp_path, argv, needle):
    root = write_store(tmp_path / "results", {"exp": law_rows({"miub": known})})
    with pytest.raises(UsageError) as err:
        cli(["analyze", str(root), *argv])
    assert needle in "\n".join(err.value.problems)


def test_cli_missing_directory_and_all_error_rows(tmp_path):
    with pytest.raises(UsageError, match="is not a directory"):
        cli(["analyze", str(tmp_path / "missing")])
    table = law_rows({"miub": known})
    errors = table.set_column(table.column_names.index("status"), "status",
                              pa.array(["error"] * table.num_rows))
    root = write_store(tmp_path / "results", {"exp": errors})
    with pytest.raises(UsageError, match="have status 'error'"):
        cli(["analyze", str(root), "--y", "miub"])


def test_cli_module_imports_without_numeric_libraries():
    # the main CLI imports this module to build --help for every command
    code = ("import sys, orchestrator.analysis.cli; "
            "print(sorted(m for m in ('numpy', 'scipy', 'matplotlib', 'pyarrow', 'torch') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "[]"


def test_run_keeps_series_for_every_panel():
    analysis = run(law_rows({"miub": known, "eval_ce": known}), y="miub,eval_ce",
                   n_boot=100)
    assert set(analysis.series) == {("miub", "rank"), ("eval_ce", "rank")}
    assert analysis.meta["trials"] == 21 and analysis.meta["rows"] == 42


def test_a_rerun_with_append_replaces_its_seeds_instead_of_adding_seeds():
    import pyarrow as pa

    from orchestrator.analysis.select import reduce_steps

    rows = []
    for run, offset in (("20260101T000000Z-1", 0.0), ("20260102T000000Z-2", 0.5)):
        for seed in (0, 1):
            rows.append({"experiment": "e", "trial_id": f"{run}-{seed}", "step": 10, "seed": seed, "rank": 4,
                         "config_hash": "abc", "run_id": run, "status": "completed", "eval_ce": 1.0 + offset + seed})
    reduced = reduce_steps(pa.Table.from_pylist(rows))
    assert sorted(reduced["eval_ce"].to_pylist()) == [1.5, 2.5]  # two seeds, both from the later run
