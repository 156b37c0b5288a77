"""The bootstrap design: what is redrawn (seeds, or trials), within what, and how often.

Seeds are the replication unit of a sweep, so the default redraws each configuration's
seeds with replacement and keeps every configuration (and so every x) in every resample.
Counts are drawn once as a (B, n) matrix and shared by every form fitted to the same points.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Resamples:
    counts: np.ndarray      # (B, n) float64: how often each point is drawn in each resample
    n_x: np.ndarray         # (B,) distinct x values each resample covers
    unit: str               # "seed" or "trial"
    rescale: float          # see rescale_factor


def resample_counts(strata: np.ndarray, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """(n_boot, n) draw counts: each stratum's members redrawn with replacement, sizes kept."""
    strata = np.asarray(strata)
    n = len(strata)
    order = np.argsort(strata, kind="stable")
    s = strata[order]
    start = np.searchsorted(s, s, side="left")
    size = np.searchsorted(s, s, side="right") - start
    pick = order[start + (rng.random((n_boot, n)) * size).astype(np.int64)]
    flat = (pick + np.arange(n_boot)[:, None] * n).ravel()
    return np.bincount(flat, minlength=n_boot * n).reshape(n_boot, n)


def choose_strata(configs: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, str]:
    """Seeds within each configuration when every configuration has at least two; else
    trials within each x value when every x has at least two; else all trials at once."""
    _, per_cfg = np.unique(configs, return_counts=True)
    if len(per_cfg) and per_cfg.min() >= 2:
        return np.asarray(configs), "seed"
    _, per_x = np.unique(x, return_counts=True)
    if len(per_x) and per_x.min() >= 2:
        return np.asarray(x), "trial"
    return np.zeros(len(x), dtype=np.int64), "trial"


def rescale_factor(strata: np.ndarray) -> float:
    """Factor that widens bootstrap deviations to the sampling spread (rescaled bootstrap).

    Redrawing m members of a stratum with replacement gives (m-1)/m of the variance of
    their mean, which is narrow for 3 seeds; deviations are scaled by sqrt(m/(m-1)), m the
    harmonic mean size of the strata that have more than one member.
    """
    _, size = np.unique(np.asarray(strata), return_counts=True)
    size = size[size > 1]
    if len(size) == 0:
        return 1.0
    m = len(size) / float(np.sum(1.0 / size))
    return float(np.sqrt(m / (m - 1.0)))


def draw(configs: np.ndarray, x: np.ndarray, n_boot: int, seed) -> Resamples:
    """Resamples of the points (configs, x) from a generator seeded with ``seed`` alone
    (an int, or a list of ints for independent streams)."""
    strata, unit = choose_strata(configs, x)
    counts = resample_counts(strata, n_boot, np.random.default_rng(seed)).astype(float)
    order = np.argsort(x, kind="stable")
    xs = np.asarray(x)[order]
    by_x = counts if np.all(np.diff(order) == 1) else counts[:, order]
    starts = np.flatnonzero(np.r_[True, xs[1:] != xs[:-1]])
    n_x = (np.add.reduceat(by_x, starts, axis=1) > 0).sum(1)
    return Resamples(counts, n_x, unit, rescale_factor(strata))
