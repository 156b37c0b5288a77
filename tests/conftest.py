"""Shared fixtures: Ray is started per test that needs it and always shut down."""
from __future__ import annotations

import copy
import os

import pytest

os.environ.setdefault("RAY_DEDUP_LOGS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

# A sweep small enough to train in seconds on one CPU core; trial configs come from it.
TINY_SPEC = {
    "name": "tiny",
    "model": {"name": "zoo/llama-xs"},
    "data": {"task": "synthetic/kv-recall", "train_size": 512, "eval_size": 64, "complexity": 2},
    "lora": {"rank": 8, "alpha": 16.0},
    "train": {"steps": 60, "lr": 1e-2, "batch_size": 16, "seq_len": 24, "eval_every": 20},
}


def tiny_trial_config(**sections) -> dict:
    """The one trial of TINY_SPEC, with ``sections`` (e.g. ``train={"steps": 10}``) merged in."""
    from orchestrator.spec import parse_spec
    from orchestrator.spec.trials import expand_grid

    document = copy.deepcopy(TINY_SPEC)
    for section, fields in sections.items():
        document.setdefault(section, {}).update(fields)
    (config,) = expand_grid(parse_spec(document))
    return config


@pytest.fixture
def trial_config():
    """A resolved trial config (from TINY_SPEC) small enough to train in seconds on one core."""
    return tiny_trial_config()


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
