"""Batches of a trial: the step's global batch, each worker's micro-batches, evaluation batches.

Every batch is cut to its own longest row (dynamic padding): rows are right-padded, so the
columns past the longest attention mask are padding in every row and dropping them changes
no real token's position or result. Which examples form a batch is a fixed function of
(seed, step), and the cut depends only on those examples, so a resumed trial sees exactly
the tensors it would have seen.

The training loss of a step is the mean CE over every answer token of the global batch,
whatever the micro-batch size, accumulation or worker count: each micro-batch contributes
its CE sum divided by the global batch's answer-token count.
"""
from __future__ import annotations

import torch

from trainables.data import IGNORE_INDEX


def global_batch(data: dict[str, torch.Tensor], step: int, batch_size: int, n: int, seed: int):
    """The step's global batch: a fixed function of (seed, step), so a resumed trial sees
    exactly the batches it would have seen, with no sampler state to save."""
    per_epoch = max(n // batch_size, 1)
    epoch, offset = divmod(step, per_epoch)
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed * 1_000_003 + epoch))
    idx = order[offset * batch_size : offset * batch_size + batch_size]
    if idx.numel() < batch_size:  # fewer examples than one batch: wrap around
        idx = order.repeat(batch_size // n + 1)[:batch_size]
    return {k: v[idx] for k, v in data.items()}


def trim(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``batch`` without the columns that are padding in every row."""
    length = int(batch["attention_mask"].sum(dim=1).max()) if batch["attention_mask"].numel() else 0
    if length >= batch["input_ids"].size(1):
        return batch
    return {k: v[:, :length] for k, v in batch.items()}


def answer_tokens(batch: dict[str, torch.Tensor]) -> int:
    """Tokens the loss is taken over: answer tokens that have a token before them."""
    return int((batch["labels"][:, 1:] != IGNORE_INDEX).sum())


def micro_batches(batch: dict[str, torch.Tensor], rank: int, world_size: int, accumulation: int):
    """This worker's shard of the global batch (every world_size-th row from rank), split
    into ``accumulation`` equal micro-batches, each trimmed to its longest row."""
    shard = {k: v[rank::world_size] for k, v in batch.items()}
    size = shard["input_ids"].size(0) // accumulation
    return [trim({k: v[i * size : (i + 1) * size] for k, v in shard.items()}) for i in range(accumulation)]


def eval_batches(encoded: dict[str, torch.Tensor], rank: int, world_size: int, batch_size: int):
    """This worker's evaluation shard in batches of ``batch_size``, each trimmed."""
    mine = torch.arange(rank, encoded["input_ids"].size(0), world_size)
    return [trim({k: v[mine[i : i + batch_size]] for k, v in encoded.items()}) for i in range(0, len(mine), batch_size)]
