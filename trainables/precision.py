"""What precision a trial trains in, decided from the requested dtype and the device.

- ``auto``: bf16 on a GPU that supports it natively (not emulated), else fp32;
- ``bfloat16``: bf16, an error on a GPU that only emulates it;
- ``float16``: fp16 with DeepSpeed's dynamic loss scaling (GPU only);
- ``float32``: fp32.

The ``precision`` column records what ran.
"""
from __future__ import annotations

import torch


class PrecisionError(ValueError):
    pass


def bf16_native() -> bool:
    """bf16 in hardware: ``is_bf16_supported`` counts emulation unless told not to."""
    return torch.cuda.is_available() and torch.cuda.is_bf16_supported(including_emulation=False)


def choose_precision(dtype: str, device_type: str, *, native_bf16: bool) -> str:
    if dtype == "float32":
        return "fp32"
    if device_type != "cuda":
        if dtype == "float16":
            raise PrecisionError("model.dtype: float16 needs a GPU (DeepSpeed's loss scaling runs there); "
                                 "allowed on CPU: auto, float32, bfloat16")
        return "bf16" if dtype == "bfloat16" else "fp32"
    if dtype == "float16":
        return "fp16"
    if dtype == "bfloat16" and not native_bf16:
        raise PrecisionError("model.dtype: bfloat16 is only emulated on this GPU; allowed: auto (fp32 here), "
                             "float32 or float16")
    return "bf16" if native_bf16 else "fp32"


def deepspeed_sections(precision: str) -> dict:
    """The DeepSpeed config sections for ``precision``."""
    if precision == "bf16":
        return {"bf16": {"enabled": True}}
    if precision == "fp16":
        return {"fp16": {"enabled": True, "loss_scale": 0, "initial_scale_power": 16, "loss_scale_window": 1000,
                         "hysteresis": 2, "min_loss_scale": 1}}
    return {}
