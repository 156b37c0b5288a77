"""A trial that diverges ends as diverged, at the step it happened, saying why."""
from __future__ import annotations

import math

import pytest
import torch

from tests.conftest import tiny_trial_config
from trainables import divergence
from trainables.lora import run_trial
from trainables.session import LocalSession


def test_rules_on_known_values():
    assert divergence.loss_problem(2.0) is None
    assert "non-finite" in divergence.loss_problem(math.nan) and "non-finite" in divergence.loss_problem(math.inf)
    assert divergence.rising_loss_problem(8.0, 4.0, 4.0) is None  # twice the start: ordinary
    assert "rose above 4 x" in divergence.rising_loss_problem(16.5, 4.0, 4.0)
    assert divergence.rising_loss_problem(1e9, 4.0, 0.0) is None  # the rule turned off
    model = torch.nn.Linear(2, 2)
    assert divergence.adapter_problem(model) is None
    with torch.no_grad():
        model.weight[0, 0] = math.inf
    assert divergence.adapter_problem(model) == "non-finite adapter weight in weight"
    model.weight.requires_grad_(False)  # frozen weights are the base model's business
    assert divergence.adapter_problem(model) is None
    assert divergence.agree("x") == "x" and divergence.agree(None) is None  # a world of one


@pytest.mark.slow
@pytest.mark.parametrize("lr", [1e4, 1e30])
def test_huge_learning_rate_ends_the_trial_as_diverged(lr, one_thread):
    session = LocalSession()
    run_trial(tiny_trial_config(train={"lr": lr, "steps": 40, "eval_every": 20}), session)
    last = session.reports[-1]
    assert last["diverged"] is True, f"lr {lr}: reports {[(r['step'], r['eval_ce']) for r in session.reports]}"
    assert last["stop_reason"].startswith(f"diverged at step {last['step']}: ")
    assert last["step"] <= 40
    assert all(r["diverged"] is False and r["stop_reason"] is None for r in session.reports[:-1])


@pytest.mark.slow
def test_ordinary_training_never_trips_the_rule(one_thread):
    session = LocalSession()
    run_trial(tiny_trial_config(train={"steps": 40, "eval_every": 20}), session)
    assert [r["diverged"] for r in session.reports] == [False, False]
