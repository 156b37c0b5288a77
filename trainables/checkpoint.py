"""Trial checkpoints: DeepSpeed engine state (adapter, optimizer, scheduler), loop state, RNG.

The engine checkpoint excludes frozen base weights, so a checkpoint of an 8B model costs
the adapter and its optimizer state, not the model. The adapter is also saved in PEFT
format (``adapter/``) so a user can load it with ``PeftModel.from_pretrained``.
"""
from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import torch

TAG = "engine"
STATE_FILE = "trial_state.json"
RNG_FILE = "rng_state.pt"


def save(engine, directory: str | Path, state: dict, *, rank: int = 0) -> None:
    """Write the engine checkpoint (every rank) and, on rank 0, loop state and the adapter."""
    directory = Path(directory)
    engine.save_checkpoint(str(directory), tag=TAG, exclude_frozen_parameters=True)
    torch.save(_rng_state(), directory / f"{rank}_{RNG_FILE}")
    _save_adapter(engine, directory / "adapter", write=rank == 0)  # a collective under ZeRO-3
    if rank == 0:
        (directory / STATE_FILE).write_text(json.dumps(state))
        check_adapter(directory / "adapter", trained=state.get("step", 0) > 0)


class AdapterIntegrityError(RuntimeError):
    """A saved adapter is empty or all zero (e.g. ZeRO-3 shards saved without gathering)."""


def check_adapter(directory: str | Path, *, trained: bool) -> None:
    """Reload a saved PEFT adapter and check its LoRA weights are real.

    Every tensor must be non-empty; after training, ``lora_B`` must not be all zero
    (it starts at zero, so an all-zero B means the update never reached the file).
    """
    from safetensors.torch import load_file

    path = Path(directory) / "adapter_model.safetensors"
    if not path.exists():
        raise AdapterIntegrityError(f"adapter check: {path} was not written")
    tensors = load_file(str(path))
    lora = {k: v for k, v in tensors.items() if "lora_" in k}
    if not lora:
        raise AdapterIntegrityError(f"adapter check: {path} holds no LoRA weights")
    empty = sorted(k for k, v in lora.items() if v.numel() == 0)
    if empty:
        raise AdapterIntegrityError(f"adapter check: {len(empty)} empty LoRA tensors in {path}, e.g. {empty[0]}")
    if trained and all(not v.any() for k, v in lora.items() if "lora_B" in k):
        raise AdapterIntegrityError(f"adapter check: every lora_B tensor in {path} is zero after training")


def load(engine, directory: str | Path, *, rank: int = 0) -> dict:
    """Restore engine, RNG and loop state saved by :func:`save`; return the loop state."""
    directory = Path(directory)
    engine.load_checkpoint(str(directory), tag=TAG, load_module_strict=False)
    rng_file = directory / f"{rank}_{RNG_FILE}"
    if rng_file.exists():
        _set_rng_state(torch.load(rng_file, weights_only=False))
    return json.loads((directory / STATE_FILE).read_text())


def _save_adapter(engine, directory: Path, *, write: bool) -> None:
    """PEFT-format adapter, written where ``write``. Under ZeRO-3 the sharded LoRA weights
    are gathered first: an all-gather that every worker must join, writer or not."""
    model = engine.module
    if getattr(engine, "zero_optimization_stage", lambda: 0)() == 3:
        import deepspeed

        params = [p for p in model.parameters() if p.requires_grad]
        with deepspeed.zero.GatheredParameters(params, modifier_rank=None):
            if write:
                model.save_pretrained(str(directory))
    elif write:
        model.save_pretrained(str(directory))


def _rng_state() -> dict:
    return {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}


def _set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
