"""Connecting to Ray: an embedded instance by default, or a cluster by address.

Every run, ``doctor`` included, connects here, so what travels to trials through Ray's runtime
environment (the Train V2 flag, hub tokens) is decided in one place.
"""
from __future__ import annotations

import os

import ray


def connect(address: str | None, num_cpus: int | None = None) -> None:
    """Embedded Ray by default; ``auto`` or ``ray://host:10001`` joins a cluster."""
    # Every evaluation checkpoints, so Tune snapshots the experiment often (num_to_keep forces
    # it) and would warn about that on every snapshot; the snapshots are what keeps rows safe.
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    if ray.is_initialized():
        return
    os.environ.setdefault("RAY_DEDUP_LOGS", "1")
    # Trials import ray.train before any lorasweep code runs: the V2 flag travels with them.
    # Hub tokens reach the trials on every node (gated models); nothing else of the driver's.
    env = {"RAY_TRAIN_V2_ENABLED": os.environ["RAY_TRAIN_V2_ENABLED"]}
    env.update({name: os.environ[name] for name in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN") if os.environ.get(name)})
    runtime_env = {"env_vars": env}
    if address:
        ray.init(address=address, runtime_env=runtime_env)
    else:
        ray.init(num_cpus=num_cpus, include_dashboard=False, runtime_env=runtime_env)
