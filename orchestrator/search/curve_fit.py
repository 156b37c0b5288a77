"""A saturating power law fitted to one learning curve, and an interval for its end.

The law is ``y(t) = c + a * (t / T) ** -b`` with ``b > 0``: it levels off at ``c`` as ``t``
grows, and at the horizon ``T`` (the last training step) it equals ``c + a``, which is what a
scheduler wants to know before ``T`` is reached. For a fixed exponent the law is linear in
``(c, a)``, so the fit is a least-squares solve per exponent over a fine geometric grid of
exponents, keeping the one with the smallest squared error: no starting point to guess, no
iterative optimiser to diverge, and many curves (bootstrap resamples) solved at once.

The interval is a parametric bootstrap: the fitted curve plus Gaussian noise at the curve's
own noise level (:func:`noise_level`) is refitted ``resamples`` times and the spread of the
refitted ends is the interval. It measures how far the end could move given the scatter of
the points; it cannot see a curve leaving the power-law shape later (a sudden drop after a
plateau).

Pure numpy and deterministic (a fixed random seed per call), so a decision can be replayed.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

EXPONENTS = np.geomspace(0.01, 4.0, 120)
PARAMETERS = 3  # c, a, b
MIN_POINTS = PARAMETERS + 1  # one residual degree of freedom at least


@dataclass(frozen=True)
class PowerLaw:
    """``c + a * (t / horizon) ** -b``; its value at the horizon is ``c + a``."""

    c: float
    a: float
    b: float
    horizon: float

    def __call__(self, t) -> np.ndarray:
        return self.c + self.a * (np.asarray(t, dtype=float) / self.horizon) ** -self.b

    @property
    def final(self) -> float:
        return self.c + self.a


@dataclass(frozen=True)
class FinalPrediction:
    """The fitted curve's value at the horizon, an interval around it, and the bootstrap
    ends the interval came from (kept so several seeds' predictions can be averaged)."""

    value: float
    lo: float
    hi: float
    law: PowerLaw
    samples: np.ndarray
    points: int


def fit_power_law(steps, values, horizon: float) -> PowerLaw:
    """Least-squares saturating power law through (steps, values)."""
    t, y = _checked(steps, values)
    _, _, b = _fit_columns(t, y[:, None], float(horizon))
    i = int(np.searchsorted(EXPONENTS, b[0]))  # refine between the grid neighbours
    fine = np.geomspace(EXPONENTS[max(i - 1, 0)], EXPONENTS[min(i + 1, len(EXPONENTS) - 1)], 41)
    x = t / float(horizon)
    best = None
    for exponent in fine:
        design = np.column_stack([np.ones_like(x), x**-exponent])
        coef, *_ = np.linalg.lstsq(design, y, rcond=None)
        sse = float(((y - design @ coef) ** 2).sum())
        if best is None or sse < best[0]:
            best = (sse, coef[0], coef[1], exponent)
    return PowerLaw(float(best[1]), float(best[2]), float(best[3]), float(horizon))


def predict_final(steps, values, horizon: float, *, interval: float = 0.9, resamples: int = 200,
                  seed: int = 0) -> FinalPrediction:
    """The law's value at ``horizon`` with a central ``interval`` from a parametric bootstrap.

    A curve that already reached the horizon is its own prediction (a zero-width interval).
    """
    t, y = _checked(steps, values)
    horizon = float(horizon)
    if t[-1] >= horizon:
        law = PowerLaw(float(y[-1]), 0.0, 1.0, horizon)
        return FinalPrediction(law.final, law.final, law.final, law, np.full(resamples, law.final), len(t))
    law = fit_power_law(t, y, horizon)
    fitted = law(t)
    sigma = noise_level(t, y, fitted)
    rng = np.random.default_rng(seed)
    resampled = fitted[:, None] + rng.normal(0.0, sigma, size=(len(t), resamples))
    c, a, _ = _fit_columns(t, resampled, horizon)
    samples = c + a
    lo, hi = np.quantile(samples, [(1 - interval) / 2, (1 + interval) / 2])
    return FinalPrediction(law.final, float(min(lo, law.final)), float(max(hi, law.final)), law, samples, len(t))


def noise_level(t: np.ndarray, y: np.ndarray, fitted: np.ndarray) -> float:
    """The scatter of a curve's points around its trend: the larger of the fit's residual
    standard deviation (for its degrees of freedom) and the one implied by second differences
    of successive points (var(y[i+1] - 2 y[i] + y[i-1]) = 6 sigma^2 plus curvature). With few
    points the residuals of a 3-parameter fit are nearly zero whatever the noise; the second
    differences still see it (and overstate it where the curve bends: a wider, safer interval)."""
    residual = float(np.sqrt(((y - fitted) ** 2).sum() / (len(t) - PARAMETERS)))
    second = np.diff(y, 2)
    return max(residual, float(np.sqrt(np.mean(second**2) / 6.0)) if len(second) else 0.0)


def mean_prediction(predictions: list[FinalPrediction], interval: float = 0.9) -> tuple[float, float, float]:
    """(value, lo, hi) of the mean of several curves' ends (one configuration's seeds): the
    bootstrap ends are averaged resample by resample, so the interval narrows with seeds."""
    value = float(np.mean([p.value for p in predictions]))
    samples = np.mean([p.samples for p in predictions], axis=0)
    lo, hi = np.quantile(samples, [(1 - interval) / 2, (1 + interval) / 2])
    return value, float(min(lo, value)), float(max(hi, value))


def _checked(steps, values) -> tuple[np.ndarray, np.ndarray]:
    t = np.asarray(steps, dtype=float)
    y = np.asarray(values, dtype=float)
    if t.shape != y.shape or t.ndim != 1:
        raise ValueError(f"steps and values must be two lists of one length, got shapes {t.shape} and {y.shape}")
    if len(t) < MIN_POINTS:
        raise ValueError(f"a power law with {PARAMETERS} parameters needs at least {MIN_POINTS} points, got {len(t)}")
    if not (np.all(np.isfinite(t)) and np.all(np.isfinite(y)) and np.all(t > 0)):
        raise ValueError("steps must be positive and values finite")
    order = np.argsort(t)
    return t[order], y[order]


def _fit_columns(t: np.ndarray, ys: np.ndarray, horizon: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Best (c, a, b) for every column of ``ys`` (points x curves), over the exponent grid."""
    designs, solvers = _designs(tuple(t / horizon))
    coef = solvers @ ys  # exponents x 2 x curves
    sse = ((ys[None] - designs @ coef) ** 2).sum(axis=1)  # exponents x curves
    best = np.argmin(sse, axis=0)
    columns = np.arange(ys.shape[1])
    return coef[best, 0, columns], coef[best, 1, columns], EXPONENTS[best]


@lru_cache(maxsize=256)
def _designs(x: tuple[float, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Per exponent, the design matrix [1, x^-b] and its pseudo-inverse (curves evaluated at
    the same steps share them)."""
    x = np.asarray(x)
    designs = np.stack([np.column_stack([np.ones_like(x), x**-b]) for b in EXPONENTS])
    return designs, np.linalg.pinv(designs)
