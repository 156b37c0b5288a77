"""The trainable run directly (no Ray): it learns, reports every eval, and resumes."""
from __future__ import annotations

import math

import pytest

from trainables.lora import run_trial
from trainables.session import LocalSession


def test_trainable_lowers_eval_ce(trial_config):
    session = LocalSession()
    run_trial(trial_config, session)
    steps = [r["step"] for r in session.reports]
    assert steps == [20, 40, 60]
    first, last = session.reports[0]["eval_ce"], session.reports[-1]["eval_ce"]
    baseline = math.log(100)  # a model that knows nothing is near uniform over ~100 tokens
    assert last < first < baseline
    assert last < baseline - 0.5, f"eval_ce only fell to {last:.3f}"
    for r in session.reports:
        assert r["eval_ppl"] == pytest.approx(math.exp(r["eval_ce"]))
        assert 0.0 <= r["eval_acc"] <= 1.0
        assert r["tokens_seen"] > 0 and math.isfinite(r["train_loss"]) and r["grad_norm"] > 0
    assert session.reports[0]["scale_factor"] == pytest.approx(16 / 8)


def test_checkpoint_round_trip_continues_from_saved_step(trial_config):
    trial_config["train"].update(steps=40, eval_every=20)
    first = LocalSession()
    run_trial(trial_config, first)
    checkpoint_at_40 = first.last_checkpoint

    trial_config["train"]["steps"] = 60
    resumed = LocalSession(restore_from=checkpoint_at_40)
    run_trial(trial_config, resumed)
    assert [r["step"] for r in resumed.reports] == [60]
    assert resumed.reports[0]["tokens_seen"] > first.reports[-1]["tokens_seen"]

    straight = LocalSession()
    run_trial(trial_config, straight)
    # Same batches, same adapter state, same optimizer state: the resumed run matches.
    assert resumed.reports[-1]["eval_ce"] == pytest.approx(straight.reports[-1]["eval_ce"], rel=1e-4)
    assert resumed.reports[-1]["tokens_seen"] == straight.reports[-1]["tokens_seen"]
