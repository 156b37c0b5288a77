"""Checkpoints: the adapter saved at every evaluation is real, under every ZeRO stage."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from trainables.checkpoint import AdapterIntegrityError, check_adapter
from trainables.lora import run_trial
from trainables.session import LocalSession


pytestmark = pytest.mark.slow  # every test here trains a model


@pytest.mark.parametrize("stage", [2, 3])
def test_zero_stages_save_a_real_adapter(trial_config, stage):
    trial_config["deepspeed"]["zero_stage"] = stage
    trial_config["train"].update(steps=20, eval_every=10)
    session = LocalSession()
    run_trial(trial_config, session)
    assert [r["step"] for r in session.reports] == [10, 20]
    adapter = Path(session.last_checkpoint) / "adapter"
    tensors = load_file(str(adapter / "adapter_model.safetensors"))
    b = [v for k, v in tensors.items() if "lora_B" in k]
    assert b and all(v.numel() > 0 for v in b) and any(v.abs().sum() > 0 for v in b)
    check_adapter(adapter, trained=True)
    assert session.reports[-1]["eval_ce"] < session.reports[0]["eval_ce"] + 0.5


def _adapter(tmp_path, tensors):
    save_file(tensors, str(tmp_path / "adapter_model.safetensors"))
    return tmp_path


def test_integrity_check_rejects_empty_and_zero_adapters(tmp_path):
    a = torch.randn(4, 8)
    with pytest.raises(AdapterIntegrityError, match="empty LoRA tensors"):
        check_adapter(_adapter(tmp_path, {"x.lora_A.weight": a, "x.lora_B.weight": torch.empty(0)}), trained=True)
    with pytest.raises(AdapterIntegrityError, match="lora_B tensor .* is zero after training"):
        check_adapter(_adapter(tmp_path, {"x.lora_A.weight": a, "x.lora_B.weight": torch.zeros(8, 4)}), trained=True)
    # At step 0 a zero B is how LoRA starts, so it passes.
    check_adapter(_adapter(tmp_path, {"x.lora_A.weight": a, "x.lora_B.weight": torch.zeros(8, 4)}), trained=False)
    with pytest.raises(AdapterIntegrityError, match="was not written"):
        check_adapter(tmp_path / "missing", trained=True)
