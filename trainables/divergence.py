"""When a trial has diverged, decided once for all of its workers.

A trial diverges when its training loss is not finite, when an adapter weight is not finite,
or when the mean training loss since the last evaluation exceeds ``train.divergence_factor``
times the loss of its first step. Each worker checks what it holds (its loss, its shard of
the adapter), and one all-reduce of a flag makes the decision global: every worker leaves the
loop at the same step, so no collective is left waiting (a local decision would hang a
multi-worker trial until its timeout).
"""
from __future__ import annotations

import math

import torch

from trainables.distributed import all_reduce_sum, world


def agree(reason: str | None) -> str | None:
    """``reason`` if any worker has one (one all-reduce; nothing to do for a world of one)."""
    if world()[1] == 1:
        return reason
    flags = all_reduce_sum(torch.tensor([0.0 if reason is None else 1.0], dtype=torch.float64))
    if flags.item() == 0:
        return None
    return reason or "diverged on another worker"


def loss_problem(loss: float) -> str | None:
    return None if math.isfinite(loss) else f"non-finite train loss ({loss})"


def rising_loss_problem(window_mean: float, first_loss: float | None, factor: float) -> str | None:
    """The loss since the last evaluation rose above ``factor`` x the first step's loss."""
    if first_loss is None or not factor or not math.isfinite(first_loss) or first_loss <= 0:
        return None
    if window_mean > factor * first_loss:
        return f"train loss {window_mean:.4g} rose above {factor:g} x its first value {first_loss:.4g}"
    return None


def adapter_problem(model: torch.nn.Module) -> str | None:
    """A non-finite trainable weight (under ZeRO-3 each worker checks its own shard)."""
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        data = getattr(param, "ds_tensor", param)
        if data.numel() and not torch.isfinite(data).all():
            return f"non-finite adapter weight in {name}"
    return None
