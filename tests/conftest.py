"""Shared fixtures: Ray is started per test that needs it and always shut down."""
from __future__ import annotations

import copy
import os

import pytest

os.environ.setdefault("RAY_DEDUP_LOGS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

TINY_TRIAL = {
    "model": {"name": "zoo/llama-xs", "dtype": "auto", "local_files_only": True},
    "data": {"task": "synthetic/kv-recall", "train_size": 512, "eval_size": 64, "complexity": 2, "seed": 0},
    "lora": {"rank": 8, "alpha": 16.0, "scaling": "standard", "target_modules": ["q_proj", "v_proj"], "dropout": 0.0},
    "train": {"steps": 60, "lr": 1e-2, "batch_size": 16, "seq_len": 24, "eval_every": 20, "seed": 0},
    "metrics": {"miub": {"enabled": True, "estimator": "jsd_topk", "top_k": 32, "temperature": 1.0}},
    "resources": {"num_workers": 1, "cpus_per_worker": 1, "gpus_per_worker": 0},
    "deepspeed": {"zero_stage": 0, "config": None},
}


@pytest.fixture
def trial_config():
    """A resolved trial config small enough to train in seconds on one CPU core."""
    return copy.deepcopy(TINY_TRIAL)


@pytest.fixture
def one_thread():
    """Fine-tunes of tiny models run fastest on one thread, and stay fast on a busy machine."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def ray_shutdown():
    """Tests that start Ray (directly or through the CLI) end with it shut down."""
    yield
    import ray

    if ray.is_initialized():
        ray.shutdown()


@pytest.fixture
def ray_local(ray_shutdown):
    import ray

    ray.init(num_cpus=2, include_dashboard=False)
    yield ray
