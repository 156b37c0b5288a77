"""lograndint and pow2 value forms, the hyperband/median/curve schedulers, and the values the
Optuna study receives from seed replicas (a real OptunaSearch on a journal, no Ray cluster)."""
from __future__ import annotations

import pytest
from ray.tune.search import sample

from orchestrator.cli import main
from orchestrator.errors import UsageError
from orchestrator.search.builders import build_scheduler, build_search_alg
from orchestrator.search.curve_scheduler import CurveScheduler
from orchestrator.search.rules import hyperband_brackets
from orchestrator.spec import parse_spec
from orchestrator.spec.forms import LogRandInt, PowersOfTwo
from orchestrator.sweep import param_space

BASE = {"name": "x", "train": {"steps": 60, "eval_every": 10}}


def spec_of(**sections):
    return parse_spec({**BASE, **sections})


def test_pow2_is_a_choice_over_powers_of_two():
    spec = spec_of(lora={"rank": {"pow2": [1, 256]}})
    assert isinstance(spec.lora.rank, PowersOfTwo) and spec.lora.rank.choice == [1, 2, 4, 8, 16, 32, 64, 128, 256]
    grid = spec_of(lora={"rank": {"pow2": [4, 16]}}, search={"algorithm": "grid"})
    assert [c["lora"]["rank"] for c in __import__("orchestrator.spec.trials", fromlist=["x"]).expand_grid(grid)] == [4, 8, 16]


def test_lograndint_is_a_log_integer_domain(tmp_path):
    spec = spec_of(lora={"rank": {"lograndint": [1, 256]}}, search={"algorithm": "random", "num_samples": 2})
    assert isinstance(spec.lora.rank, LogRandInt) and spec.lora.rank.bounds == (1, 256)
    domain = param_space(spec)["lora"]["rank"]
    assert isinstance(domain, sample.Integer) and isinstance(domain.sampler, sample.LogUniform)
    assert (domain.lower, domain.upper) == (1, 257)  # inclusive in the spec, exclusive in Tune
    draws = [domain.sample() for _ in range(400)]
    assert min(draws) >= 1 and max(draws) <= 256 and sum(d <= 16 for d in draws) > 120  # log: half below 16
    from ray.tune.search.optuna import OptunaSearch

    dist = OptunaSearch.convert_search_space({"r": domain})["r"]
    assert dist.log and (dist.low, dist.high) == (1, 256)


@pytest.mark.parametrize(
    "lora,fragment",
    [
        ({"rank": {"pow2": [1, 100]}}, "pow2 needs powers of two as ends (1, 2, 4, ...), got 100"),
        ({"rank": {"pow2": [8, 2]}}, "pow2 needs [lo, hi] with lo < hi"),
        ({"rank": {"lograndint": [0, 8]}}, "lora.rank.lograndint"),
        ({"rank": {"lograndint": [16, 4]}}, "lograndint needs [lo, hi] with lo < hi, got [16, 4]"),
        ({"alpha": {"pow2": [1, 64]}}, "lora.alpha"),
    ],
)
def test_bad_forms_are_named(lora, fragment):
    with pytest.raises(UsageError) as info:
        spec_of(lora=lora, search={"algorithm": "random"})
    assert any(fragment in p for p in info.value.problems), info.value.problems


def test_lograndint_cannot_be_enumerated_by_grid():
    with pytest.raises(UsageError) as info:
        spec_of(lora={"rank": {"lograndint": [1, 8]}})
    assert any("lora.rank: {lograndint: [1, 8]} cannot be enumerated" in p for p in info.value.problems)


def test_dry_run_shows_the_new_forms_and_schedulers(capsys):
    from pathlib import Path

    spec = Path(__file__).resolve().parents[1] / "search_spaces" / "optuna_rank_alpha.yaml"
    assert main(["run", str(spec), "--dry-run", "--set", "lora.rank={pow2: [1, 64]}",
                 "--set", "data.train_size={lograndint: [256, 4096]}", "--set", "scheduler.type=curve",
                 "--set", "train.eval_every=10"]) == 0
    out = capsys.readouterr().out
    assert "lora.rank        pow2 [1, 64] (a choice over 1, 2, 4, 8, 16, 32, 64)" in out
    assert "data.train_size  lograndint [256, 4096] (integers, log-uniform)" in out
    assert "scheduler: curve on eval_ce (min): c + a * step^-b fitted" in out and "at steps 40, 50" in out


def test_schedulers_are_built_on_steps():
    hb = build_scheduler(spec_of(scheduler={"type": "hyperband", "reduction_factor": 3}))
    assert type(hb).__name__ == "HyperBandScheduler" and (hb._time_attr, hb._max_t_attr, hb._eta) == ("step", 60, 3)
    med = build_scheduler(spec_of(scheduler={"type": "median", "grace_period": 20, "min_samples": 2, "metric": "eval_acc", "mode": "max"}))
    assert type(med).__name__ == "MedianStoppingRule"
    assert (med._time_attr, med._grace_period, med._min_samples_required, med._metric, med._mode) == ("step", 20, 2, "eval_acc", "max")
    curve = build_scheduler(spec_of(scheduler={"type": "curve", "grace_period": 20, "interval": 0.8}))
    assert isinstance(curve, CurveScheduler) and (curve.max_t, curve.grace_period, curve.interval) == (60, 20, 0.8)


def test_hyperband_brackets_follow_rays_rule():
    spec = spec_of(scheduler={"type": "hyperband", "reduction_factor": 3}, train={"steps": 81, "eval_every": 9})
    assert hyperband_brackets(spec) == [(5, []), (8, [27]), (15, [9, 27]), (34, [3, 9, 27]), (81, [1, 3, 9, 27])]


@pytest.mark.parametrize(
    "scheduler,fragment",
    [
        ({"type": "median", "grace_period": 60}, "scheduler.grace_period: 60 is not less than train.steps (60), so the median stopping rule"),
        ({"type": "curve", "grace_period": 70}, "scheduler.grace_period: 70 is not less than train.steps (60), so the curve scheduler"),
        ({"type": "hyperband", "reduction_factor": 60}, "scheduler.reduction_factor: 60 is not less than train.steps (60)"),
        ({"type": "curve", "min_points": 6}, "scheduler.min_points: 6 evaluations are needed"),
        ({"type": "median", "metric": "loss"}, "scheduler.metric: 'loss' is not a reported metric"),
        ({"type": "hyperband", "metric": "miub"}, "scheduler.metric: 'miub' is not reported because metrics.miub.enabled is false"),
        ({"type": "bohb"}, "scheduler.type"),
    ],
)
def test_scheduler_problems(scheduler, fragment):
    doc = {**BASE, "scheduler": scheduler, "metrics": {"miub": {"enabled": False}}}
    with pytest.raises(UsageError) as info:
        parse_spec(doc)
    assert any(fragment in p for p in info.value.problems), info.value.problems


def _optuna_chain(tmp_path, metric="eval_ce"):
    spec = spec_of(lora={"rank": {"pow2": [1, 32]}}, search={"algorithm": "optuna", "num_samples": 6, "metric": metric},
                   train={"steps": 60, "eval_every": 20, "seed": {"grid": [0, 1]}}, results={"path": str(tmp_path)})
    alg = build_search_alg(spec)
    replicator = alg.searcher.searcher
    assert replicator.set_search_properties(None, None, param_space(spec))
    return spec, replicator, replicator.searcher


@pytest.mark.parametrize("metric", ["eval_ce", ["eval_ce", "eval_acc"]])
def test_every_configuration_that_ran_has_its_values_in_the_study(tmp_path, metric):
    """Six configurations x two seeds; the even ones have a seed stopped at step 20 or 40."""
    spec, replicator, optuna_search = _optuna_chain(tmp_path, metric)
    names = metric if isinstance(metric, list) else [metric]
    for n in range(6):
        ids = [f"c{n}s0", f"c{n}s1"]
        for trial_id in ids:
            assert replicator.suggest(trial_id)
        stop = {0: 20, 2: 40, 4: 20}.get(n)
        for i, trial_id in enumerate(ids):
            last = stop if (stop and i == 1) else 60
            for step in range(20, last + 1, 20):
                result = {"step": step, "eval_ce": n + i + step / 100, "eval_acc": 0.1 * i}
                if step < last:
                    replicator.on_trial_result(trial_id, result)
            replicator.on_trial_complete(trial_id, result=result)
    study = optuna_search._ot_study
    trials = study.trials
    assert len(trials) == 6 and all(t.state.is_finished() for t in trials)
    if len(names) == 1:
        assert [t.state.name for t in trials] == ["PRUNED", "COMPLETE"] * 3
        for n, t in enumerate(trials):  # seed-averaged intermediate values at every common step
            assert t.value is not None
            common = [20] if n in (0, 4) else [20, 40] if n == 2 else [20, 40, 60]
            assert sorted(t.intermediate_values) == common
            assert t.value == pytest.approx(n + 0.5 + common[-1] / 100)
            if t.state.name == "PRUNED":
                assert t.user_attrs["stopped_at_step"] == common[-1]
    else:
        assert all(t.state.name == "COMPLETE" and len(t.values) == 2 for t in trials)
        assert trials[2].values == pytest.approx([2 + 0.5 + 0.4, 0.05]) and trials[2].user_attrs["stopped_at_step"] == 40
        assert trials[1].values == pytest.approx([1 + 0.5 + 0.6, 0.05]) and "stopped_at_step" not in trials[1].user_attrs


@pytest.mark.slow
def test_curve_scheduler_predictions_reach_the_stored_rows(tmp_path, ray_shutdown):
    """A good learning rate, then hopeless ones: the curve scheduler stops those, and every
    row it predicted for carries the prediction; the stopping row says why."""
    from pathlib import Path

    from orchestrator.store import read_results

    results = tmp_path / "results"
    spec = Path(__file__).resolve().parents[1] / "search_spaces" / "quickstart.yaml"
    code = main([
        "run", str(spec), "--set", "train.steps=12", "--set", "train.eval_every=2", "--set", "data.train_size=128",
        "--set", "data.eval_size=32", "--set", "lora.rank=8", "--set", "lora.scaling=standard",
        "--set", "train.lr={grid: [3e-2, 1e-7, 1e-7]}", "--set", "resources.max_concurrent_trials=1",
        "--set", "metrics.miub.enabled=false", "--set", "scheduler={type: curve, grace_period: 4}",
        "--set", f"results.path={results}", "--num-cpus", "2",
    ])
    assert code == 0
    rows = read_results(results).to_pylist()
    predicted = [r for r in rows if r["curve_pred"] is not None]
    assert predicted and all(r["curve_lo"] <= r["curve_pred"] <= r["curve_hi"] for r in predicted)
    assert all(r["step"] >= 8 for r in predicted)  # four evaluations (2, 4, 6, 8) before the first fit
    stopped = [r for r in rows if r["status"] == "stopped"]
    assert stopped and all(r["lr"] == pytest.approx(1e-7) for r in stopped)
    assert all(r["stop_reason"].startswith("curve: ") for r in stopped)
    assert all(r["stop_reason"] is None for r in rows if r["status"] != "stopped")
