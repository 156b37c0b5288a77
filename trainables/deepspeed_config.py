"""The DeepSpeed config of a trial: ZeRO stage and optimizer from the spec, precision from the device.

A user config file (``deepspeed.config``) is read and lorasweep's batch sizes, learning
rate and clipping are filled in, so the spec stays the one source of those values. The
global batch is ``train_micro_batch_size_per_gpu x gradient_accumulation_steps x workers``
(``train_batch_size``), which DeepSpeed checks.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch


def bf16_supported() -> bool:
    return torch.cuda.is_available() and torch.cuda.is_bf16_supported()


def build_config(
    *,
    micro_batch_size: int,
    lr: float,
    zero_stage: int,
    grad_clip: float,
    config_path: str | None = None,
    gradient_accumulation_steps: int = 1,
    world_size: int = 1,
) -> dict:
    """DeepSpeed JSON config; bf16 on GPUs that support it, fp32 on CPU."""
    config = json.loads(Path(config_path).read_text()) if config_path else {}
    config.update(
        train_micro_batch_size_per_gpu=micro_batch_size,
        gradient_accumulation_steps=gradient_accumulation_steps,
        train_batch_size=micro_batch_size * gradient_accumulation_steps * world_size,
        gradient_clipping=grad_clip,
        steps_per_print=10**9,
        wall_clock_breakdown=False,
    )
    config.setdefault("optimizer", {"type": "AdamW", "params": {"weight_decay": 0.0}})
    config["optimizer"].setdefault("params", {})["lr"] = lr
    config.setdefault("zero_optimization", {})["stage"] = zero_stage
    if bf16_supported():
        config.setdefault("bf16", {"enabled": True})
    return config
