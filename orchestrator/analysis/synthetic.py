"""Result rows drawn from known laws: check the analysis against a closed form first.

``sweep_rows`` builds a full factorial sweep in the result-store schema where each metric's
final value is a chosen function of the configuration times multiplicative seed noise.
``demo_rows`` is one such sweep over all four axes, with rsLoRA improving faster with rank
than standard LoRA; the benchmark and the documentation's example report use it.
"""
from __future__ import annotations

import hashlib
import itertools
from typing import Callable, Mapping, Sequence

import numpy as np
import pyarrow as pa

MODEL_PARAMS = {"zoo/llama-xs": 1_000_000, "zoo/llama-s": 4_000_000,
                "zoo/llama-m": 16_000_000, "zoo/llama-l": 64_000_000}
DEFAULTS = {"model": "zoo/llama-xs", "task": "synthetic/kv-recall", "train_size": 2000,
            "complexity": 4, "rank": 8, "alpha": 16.0, "scaling": "standard", "lr": 1e-3}


def sweep_rows(grid: Mapping[str, Sequence], metrics: Mapping[str, Callable[[dict], np.ndarray]],
               seeds: Sequence[int] = (0, 1, 2), steps: Sequence[int] = (100,),
               noise: float = 0.05, rng_seed: int = 0,
               experiment: str = "synthetic", tokens_per_step: int = 16 * 48) -> pa.Table:
    """One row per (configuration in ``grid`` x seed x step).

    ``metrics[name](cfg)`` gets the per-trial configuration columns (numpy arrays) and
    returns the noiseless final value; each trial draws one factor ``1 + noise * N(0, 1)``
    per metric (applied to ``1 - acc`` for ``eval_acc``). Earlier steps are worse by up to
    20%, so ``final`` and ``best`` select the last step. ``tokens_seen`` is
    ``step * tokens_per_step`` unless the grid sets ``tokens_seen`` itself (then it is the
    final step's count, earlier steps in proportion).
    """
    names = list(grid)
    combos = list(itertools.product(*(grid[n] for n in names), seeds))
    cfg = {n: np.array([c[i] for c in combos]) for i, n in enumerate(names)}
    cfg["seed"] = np.array([c[-1] for c in combos], dtype=np.int64)
    n_trials = len(combos)
    for name, value in DEFAULTS.items():
        cfg.setdefault(name, np.full(n_trials, value))
    if "model_params" not in grid:
        cfg["model_params"] = np.array([MODEL_PARAMS.get(m, 1_000_000) for m in cfg["model"]])
    rank = cfg["rank"].astype(float)
    rs = cfg["scaling"] == "rslora"
    cfg["scale_factor"] = cfg["alpha"] / np.where(rs, np.sqrt(rank), rank)
    cfg["trainable_params"] = (rank * 2 * 64 * np.sqrt(cfg["model_params"] / 1e6)).astype(int)
    key_cols = [n for n in sorted(cfg) if n != "seed"]
    cfg["config_hash"] = np.array([hashlib.sha1(repr(row).encode()).hexdigest()[:12]
                                   for row in zip(*(cfg[n].tolist() for n in key_cols))])
    rng = np.random.default_rng(rng_seed)
    final = {}
    for name, fn in metrics.items():
        factor = 1 + noise * rng.standard_normal(n_trials)
        value = np.asarray(fn(cfg), dtype=float)
        final[name] = 1 - (1 - value) * factor if name == "eval_acc" else value * factor
    steps = np.asarray(steps)
    trial = np.repeat(np.arange(n_trials), len(steps))
    step = np.tile(steps, n_trials)
    late = np.tile(1 + 0.2 * (1 - steps / steps.max()), n_trials)
    cols = {"experiment": np.full(len(trial), experiment),
            "trial_id": np.array([f"t{i:06d}" for i in range(n_trials)])[trial],
            "status": np.full(len(trial), "completed")}
    for n in ("model", "model_params", "trainable_params", "task", "train_size",
              "complexity", "rank", "alpha", "scaling", "scale_factor", "lr", "seed",
              "config_hash"):
        cols[n] = cfg[n][trial]
    cols["step"] = step
    if "tokens_seen" in cfg:
        cols["tokens_seen"] = (cfg["tokens_seen"][trial] * step / steps.max()).astype(np.int64)
    else:
        cols["tokens_seen"] = step * tokens_per_step
    for name, v in final.items():
        cols[name] = 1 - (1 - v[trial]) * late if name == "eval_acc" else v[trial] * late
    types = {"model_params": pa.int64(), "trainable_params": pa.int64(),
             "train_size": pa.int64(), "complexity": pa.int64(), "rank": pa.int64(),
             "seed": pa.int64(), "step": pa.int64(), "tokens_seen": pa.int64(), "alpha": pa.float64(),
             "scale_factor": pa.float64(), "lr": pa.float64()}
    return pa.table({n: pa.array(v, type=types.get(n)) for n, v in cols.items()})


def _norm(cfg):
    return (cfg["rank"].astype(float), cfg["model_params"] / 1e6, cfg["train_size"] / 500.0,
            cfg["complexity"] / 2.0, cfg["scaling"] == "rslora")


def _ce(cfg):
    r, m, d, k, rs = _norm(cfg)
    return 0.6 + 2.0 * r ** np.where(rs, -0.2, -0.05) * m ** -0.15 * d ** -0.1 * k ** 0.3


def _err(cfg):
    r, m, d, k, rs = _norm(cfg)
    return np.minimum(0.05 + 0.6 * r ** np.where(rs, -0.25, -0.1) * m ** -0.1 * d ** -0.1
                      * k ** 0.2, 0.98)


def _miub(cfg):
    r, m, d, k, _ = _norm(cfg)
    return 0.02 + 0.5 * r ** -0.3 * m ** -0.1 * d ** -0.05 * k ** -0.1


DEMO_METRICS = {"miub": _miub, "eval_ce": _ce, "eval_ppl": lambda c: np.exp(_ce(c)),
                "eval_acc": lambda c: 1 - _err(c)}


def demo_rows(n_steps: int = 20, seeds: Sequence[int] = (0, 1, 2), rng_seed: int = 0,
              experiment: str = "demo") -> pa.Table:
    """A factorial sweep over rank, model size, data size, complexity and scaling rule.

    7 ranks x 3 models x 4 data sizes x 3 complexities x 2 rules x len(seeds) trials,
    ``n_steps`` evaluation rows each (1512 trials; 66 steps give ~100k rows).
    """
    grid = {"rank": [1, 2, 4, 8, 16, 32, 64],
            "model": ["zoo/llama-xs", "zoo/llama-s", "zoo/llama-m"],
            "train_size": [500, 1000, 2000, 4000], "complexity": [2, 4, 8],
            "scaling": ["standard", "rslora"]}
    steps = np.arange(1, n_steps + 1) * 10
    return sweep_rows(grid, DEMO_METRICS, seeds=seeds, steps=steps, rng_seed=rng_seed,
                      experiment=experiment)
