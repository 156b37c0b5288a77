"""Process-group setup for DeepSpeed, alone in a Tune trial or as one of N Ray Train workers.

DeepSpeed always runs inside a torch.distributed group: a single-process trial gets a
world of one on a free local port (gloo on CPU, nccl on GPU); under Ray Train the group
already exists and is reused.
"""
from __future__ import annotations

import os
import socket

import torch
import torch.distributed as dist


def backend() -> str:
    return "nccl" if torch.cuda.is_available() else "gloo"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ensure_process_group() -> None:
    """Make ``deepspeed.initialize`` possible in this process; idempotent across trials."""
    import deepspeed

    if not dist.is_initialized():  # a lone trial: a world of one on a free local port
        os.environ.update(
            MASTER_ADDR="127.0.0.1", MASTER_PORT=str(_free_port()), RANK="0", WORLD_SIZE="1", LOCAL_RANK="0"
        )
    deepspeed.init_distributed(dist_backend=backend(), verbose=False)


def world() -> tuple[int, int]:
    """(rank, world_size) of the current group, (0, 1) outside one."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """Sum a tensor over workers (a no-op for a world of one)."""
    rank, size = world()
    if size > 1:
        device = torch.device("cuda", torch.cuda.current_device()) if backend() == "nccl" else tensor.device
        moved = tensor.to(device)
        dist.all_reduce(moved, op=dist.ReduceOp.SUM)
        return moved.to(tensor.device)
    return tensor
