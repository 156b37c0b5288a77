"""The power-law fit on known curves, and the curve scheduler's decisions and row columns."""
from __future__ import annotations

import numpy as np
import pytest
from ray.tune.schedulers import TrialScheduler

from orchestrator.search.curve_fit import fit_power_law, mean_prediction, predict_final
from orchestrator.search.curve_scheduler import CurveScheduler

STEPS = np.arange(10, 151, 10.0)


def law(t, c=1.2, a=0.8, b=0.7, horizon=150.0):
    return c + a * (np.asarray(t) / horizon) ** -b


def test_exact_power_law_is_recovered():
    fit = fit_power_law(STEPS, law(STEPS), 150)
    assert fit.final == pytest.approx(2.0, abs=2e-3)
    assert fit.b == pytest.approx(0.7, rel=0.03) and fit.c == pytest.approx(1.2, abs=0.03)


def test_early_points_predict_the_end_within_the_interval():
    rng = np.random.default_rng(3)
    noisy = law(STEPS) + rng.normal(0, 0.01, len(STEPS))
    early = predict_final(STEPS[:6], noisy[:6], 150)  # up to step 60 of 150
    assert early.lo <= 2.0 <= early.hi and early.lo < early.value < early.hi
    later = predict_final(STEPS[:12], noisy[:12], 150)
    assert later.hi - later.lo < early.hi - early.lo  # more points, a narrower interval


def test_a_finished_curve_predicts_its_last_value_and_rising_curves_fit():
    done = predict_final(STEPS, law(STEPS), 150)
    assert done.value == done.lo == done.hi == pytest.approx(law(150.0))
    rising = fit_power_law(STEPS, law(STEPS, c=3.0, a=-1.0, b=0.5), 150)
    assert rising.final == pytest.approx(2.0, abs=1e-3)


def test_seed_means_narrow_the_interval():
    rng = np.random.default_rng(0)
    seeds = [predict_final(STEPS[:8], law(STEPS[:8]) + rng.normal(0, 0.02, 8), 150, seed=i) for i in range(3)]
    value, lo, hi = mean_prediction(seeds)
    assert value == pytest.approx(np.mean([p.value for p in seeds]))
    assert hi - lo < np.mean([p.hi - p.lo for p in seeds])


def test_too_few_points_is_an_error():
    with pytest.raises(ValueError, match="at least 4 points"):
        fit_power_law(STEPS[:3], law(STEPS[:3]), 150)


class Trial:
    def __init__(self, trial_id, rank, seed):
        self.trial_id = trial_id
        self.config = {"lora": {"rank": rank}, "train": {"seed": seed}}


def feed(scheduler, trial, curve, upto):
    decisions = []
    for t in STEPS[STEPS <= upto]:
        decisions.append(scheduler.on_trial_result(None, trial, {"step": int(t), "eval_ce": float(curve(t))}))
        if decisions[-1] == TrialScheduler.STOP:
            break
    return decisions


def test_a_hopeless_configuration_is_stopped_with_its_reason_and_its_other_seeds_follow():
    sched = CurveScheduler(metric="eval_ce", mode="min", max_t=150, grace_period=30)
    good, bad, bad_seed = Trial("g", 8, 0), Trial("b", 1, 0), Trial("b2", 1, 1)
    for trial in (good, bad, bad_seed):
        sched.on_trial_add(None, trial)
    assert feed(sched, good, law, 150)[-1] == TrialScheduler.CONTINUE  # runs to the end
    decisions = feed(sched, bad, lambda t: law(t, c=2.5), 150)
    assert decisions[-1] == TrialScheduler.STOP and 4 <= len(decisions) < 15  # from step 40 (4 points, past grace)
    stopped_at = 10 * len(decisions)
    row = sched.row_columns("b", {"step": stopped_at})
    assert row["curve_pred"] == pytest.approx(3.3, abs=0.02) and row["curve_lo"] <= row["curve_pred"] <= row["curve_hi"]
    assert "worse than the pessimistic end" in row["stop_reason"]
    assert sched.row_columns("b", {"step": stopped_at - 10}) == {}  # only for the result it was made for
    assert feed(sched, bad_seed, lambda t: law(t, c=2.5), 150) == [TrialScheduler.STOP]
    assert sched.row_columns("b2", {"step": 10})["stop_reason"] == row["stop_reason"]


def test_close_configurations_both_continue_and_max_mode_mirrors():
    sched = CurveScheduler(metric="eval_acc", mode="max", max_t=150, grace_period=30)
    a, b = Trial("a", 2, 0), Trial("b", 4, 0)
    rng = np.random.default_rng(1)
    noise = rng.normal(0, 0.002, 20)
    feed_acc = lambda trial, c: [sched.on_trial_result(None, trial, {"step": int(t), "eval_acc": float(c - law(t) / 4 + n)})
                                 for t, n in zip(STEPS, noise)]
    assert set(feed_acc(a, 1.0)) == {TrialScheduler.CONTINUE}
    assert set(feed_acc(b, 1.0)) == {TrialScheduler.CONTINUE}
    pred, lo, hi = sched.prediction(sched._configuration["b"])
    assert lo <= pred <= hi and pred == pytest.approx(0.5, abs=0.05)
    worse = Trial("w", 16, 0)
    decisions = [sched.on_trial_result(None, worse, {"step": int(t), "eval_acc": float(0.2 - law(t) / 4)}) for t in STEPS[:5]]
    assert decisions[-1] == TrialScheduler.STOP
