"""Which device a trial's worker uses: exactly what Ray assigned it, never a guess.

A worker that asked Ray for no GPU hides CUDA (``CUDA_VISIBLE_DEVICES=""``) and runs on the
CPU with gloo, so a CPU trial on a GPU node never takes ``cuda:0`` from a GPU trial. A worker
that asked for GPUs and cannot use CUDA fails at once with one line saying why (torch's CUDA
build, the driver, the devices it sees) instead of training on the CPU for hours.
"""
from __future__ import annotations

import os

import torch


class DeviceError(RuntimeError):
    """The trial asked for GPUs that this worker cannot use."""


def choose_device(gpus_requested: float, *, cuda_available: bool, device_count: int, local_rank: int,
                  torch_cuda: str | None, driver: str | None) -> torch.device:
    """The device for ``gpus_requested`` GPUs per worker, given what this process sees."""
    if gpus_requested <= 0:
        return torch.device("cpu")
    if not cuda_available or device_count == 0:
        raise DeviceError(
            f"the trial asked for {gpus_requested:g} GPU per worker but CUDA is unavailable here: torch "
            f"{torch.__version__} built for CUDA {torch_cuda or 'none (a CPU build)'}, NVIDIA driver "
            f"{driver or 'not found'}, {device_count} visible device(s); install a torch build that matches "
            f"the driver (docs/cluster.md) or set resources.gpus_per_worker: 0"
        )
    if local_rank >= device_count:
        raise DeviceError(f"worker local rank {local_rank} has no GPU: only {device_count} visible")
    return torch.device("cuda", local_rank)


def trial_device(gpus_requested: float) -> torch.device:
    """:func:`choose_device` for this process; a CPU trial hides CUDA before anything uses it."""
    if gpus_requested <= 0:
        os.environ["CUDA_VISIBLE_DEVICES"] = ""
        return torch.device("cpu")
    available = torch.cuda.is_available()
    # Ray sets CUDA_VISIBLE_DEVICES to the GPUs it assigned, so index 0.. are this worker's.
    local = 0 if "LOCAL_RANK" not in os.environ or torch.cuda.device_count() == 1 else int(os.environ["LOCAL_RANK"])
    return choose_device(gpus_requested, cuda_available=available,
                         device_count=torch.cuda.device_count() if available else 0, local_rank=local,
                         torch_cuda=torch.version.cuda, driver=driver_version())


def driver_version() -> str | None:
    """The NVIDIA driver version, read from the kernel module (no nvidia-smi needed)."""
    try:
        with open("/proc/driver/nvidia/version") as f:
            line = f.readline()
    except OSError:
        return None
    for word in line.split():
        if word[:1].isdigit() and "." in word:
            return word
    return None
