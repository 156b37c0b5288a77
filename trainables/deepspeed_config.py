"""The DeepSpeed config of a trial: ZeRO stage and optimizer from the spec, precision decided
by :mod:`trainables.precision`, a user's config file honoured by
:mod:`trainables.ds_user_config` (``"auto"`` resolved, conflicts refused).
"""
from __future__ import annotations

from trainables import ds_user_config
from trainables.precision import deepspeed_sections


def fused_adam_buildable() -> bool:
    """Whether DeepSpeed's fused Adam can be built here (it needs a CUDA toolkit that matches
    torch's CUDA); where it cannot, trials use torch's AdamW through DeepSpeed instead."""
    try:
        from deepspeed.ops.op_builder import FusedAdamBuilder

        return bool(FusedAdamBuilder().is_compatible(verbose=False))
    except Exception:  # any failure to probe means it will not build
        return False


def build_config(
    *,
    micro_batch_size: int,
    lr: float,
    zero_stage: int,
    grad_clip: float,
    config_path: str | None = None,
    precision: str = "fp32",
    world_size: int = 1,
    gradient_accumulation_steps: int = 1,
    device_type: str = "cpu",
) -> dict:
    """DeepSpeed JSON config for one trial; ``notes`` lists the ``"auto"`` values resolved."""
    config, _ = build_config_with_notes(
        micro_batch_size=micro_batch_size, lr=lr, zero_stage=zero_stage, grad_clip=grad_clip,
        config_path=config_path, precision=precision, world_size=world_size,
        gradient_accumulation_steps=gradient_accumulation_steps, device_type=device_type,
    )
    return config


def build_config_with_notes(
    *, micro_batch_size, lr, zero_stage, grad_clip, config_path=None, precision="fp32", world_size=1,
    gradient_accumulation_steps=1, device_type="cpu",
) -> tuple[dict, list[str]]:
    user = ds_user_config.load(config_path) if config_path else {}
    user.setdefault("optimizer", {"type": "AdamW", "params": {"weight_decay": 0.0}})
    decided = {
        "train_micro_batch_size_per_gpu": micro_batch_size,
        "gradient_accumulation_steps": gradient_accumulation_steps,
        "train_batch_size": micro_batch_size * gradient_accumulation_steps * world_size,
        "gradient_clipping": grad_clip,
        "optimizer.params.lr": lr,
        "zero_optimization.stage": zero_stage,
    }
    config, notes = ds_user_config.resolve(user, decided, source=config_path or "deepspeed.config")
    config.update(steps_per_print=10**9, wall_clock_breakdown=False)
    if ds_user_config.user_precision(user) is None:
        for name in ("bf16", "fp16"):
            config.pop(name, None)  # "auto" or disabled: the spec's precision decides
        config.update(deepspeed_sections(precision))
    if device_type == "cuda" and config["optimizer"].get("type", "").lower().startswith("adam") \
            and not fused_adam_buildable():
        config["optimizer"].setdefault("params", {})["torch_adam"] = True
        notes.append("fused Adam cannot be built here: torch's AdamW is used")
    return config, notes


def precision_of(config: dict) -> str:
    """What a DeepSpeed config trains in: the ``precision`` column."""
    for name, precision in (("bf16", "bf16"), ("fp16", "fp16")):
        section = config.get(name)
        if isinstance(section, dict) and section.get("enabled") is True:
            return precision
    return "fp32"
