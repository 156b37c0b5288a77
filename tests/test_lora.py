"""The trainable run directly (no Ray): it learns, reports every eval, and resumes."""
from __future__ import annotations

import json
import math

import pytest

from trainables.lora import run_trial
from trainables.session import LocalSession


pytestmark = pytest.mark.slow  # every test here trains a model


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
    # Config columns (rank, scale_factor, ...) are the driver's; the trial reports measurements.
    assert not {"rank", "scale_factor", "model", "lr"} & set(session.reports[0])
    assert session.reports[0]["trainable_params"] > 0 and session.reports[0]["precision"] == "fp32"
    for r in session.reports:  # MIUB from the same evaluation pass, one value per adapted module
        assert 0.0 <= r["miub"] <= math.log(2) and r["miub_estimator"] == "jsd_topk"
        assert sorted(r["miub_layers"]) == [f"model.layers.{i}.self_attn.{m}" for i in range(2) for m in ("q_proj", "v_proj")]
        assert r["miub"] == pytest.approx(sum(r["miub_layers"].values()) / 4)


def test_phi3_trial_adapts_its_fused_qkv_from_the_default_targets(trial_config, monkeypatch, tmp_path):
    monkeypatch.setenv("LORASWEEP_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("LORASWEEP_PRETRAIN_STEPS", "20")
    trial_config["model"]["name"] = "zoo/phi3-xs"
    trial_config["train"].update(steps=10, eval_every=10)
    session = LocalSession()
    run_trial(trial_config, session)
    layers = session.reports[-1]["miub_layers"]
    assert sorted(layers) == ["model.layers.0.self_attn.qkv_proj", "model.layers.1.self_attn.qkv_proj"]


def test_file_task_uses_the_field_names_of_the_spec(trial_config, tmp_path):
    data = tmp_path / "qa.jsonl"
    rows = [{"question": f"{a}+{b}=", "reply": str(a + b)} for a in range(12) for b in range(12)]
    data.write_text("\n".join(json.dumps(r) for r in rows))
    trial_config["data"].update(task=f"file:{data}", train_size=100, eval_size=20,
                                prompt_field="question", answer_field="reply")
    trial_config["train"].update(steps=10, eval_every=10)
    session = LocalSession()
    run_trial(trial_config, session)
    assert math.isfinite(session.reports[-1]["eval_ce"]) and 0.0 <= session.reports[-1]["eval_acc"] <= 1.0


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
