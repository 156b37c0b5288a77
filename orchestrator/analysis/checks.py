"""The checks behind a verdict, and the verdict rules themselves.

Conventions: accuracy is fitted as its error ``1 - eval_acc`` so every fitted quantity is
one that a power law drives down; the exponent ``b`` of ``a * x^(-b)`` (with ``a >= 0``) is
then positive when the quantity falls with x and negative when it rises. What is *expected*
is set per (metric, axis) in :data:`RISES_WITH`; everything else is expected to fall.
"""
from __future__ import annotations

import math

import numpy as np
from scipy import stats

from .fit import Fit, fit_law
from .laws import Insufficient, Law, predict

HOLDS, FAILS, INSUFFICIENT = "holds", "fails", "insufficient"
ALPHA = 0.05          # Spearman significance level
AIC_MARGIN = 2.0      # the law must beat the flat model by more than 2 AIC units

# Loss-like metrics get worse on harder tasks: CE, PPL and the accuracy error rise with
# complexity. MIUB falls with rank, model size and data complexity (see miub.md).
RISES_WITH = {("eval_ce", "complexity"), ("eval_ppl", "complexity"),
              ("eval_acc", "complexity")}
TARGETS = {"eval_acc": "1 - eval_acc"}


def target(metric: str, values: np.ndarray) -> tuple[str, np.ndarray]:
    """The quantity a law is fitted to: the metric itself, or ``1 - eval_acc``."""
    if metric in TARGETS:
        return TARGETS[metric], 1.0 - values
    return metric, values


def expected_trend(metric: str, x: str, expect: dict | None = None) -> str:
    """'falls' or 'rises' for the fitted quantity of ``metric`` along axis ``x``."""
    if expect and metric in expect:
        return expect[metric]
    return "rises" if (metric, x) in RISES_WITH else "falls"


def log_linear_limit(params: dict, y: np.ndarray) -> bool:
    """True when a saturating fit sits in its b -> 0 limit: a * x^-b + c ~ (a + c) - a b log x.

    There a and c grow without bound in opposite directions while a*b stays finite, so b is
    not identified even though the trend is; reported so a tiny b is not read as a result.
    """
    scale = float(np.max(np.abs(y))) if len(y) else 0.0
    return abs(params["b"]) < 0.01 and abs(params["a"]) > 100 * scale > 0


def spearman(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Rank correlation of y with x and its two-sided p-value (NaN when y is constant)."""
    if np.ptp(y) == 0 or np.ptp(x) == 0:
        return math.nan, math.nan
    res = stats.spearmanr(x, y)
    return float(res.statistic), float(res.pvalue)


def r2_log(y: np.ndarray, pred: np.ndarray) -> float | None:
    """R^2 of log y against log prediction; None when a value or prediction is <= 0."""
    if np.any(y <= 0) or np.any(pred <= 0):
        return None
    ly, lp = np.log(y), np.log(pred)
    tot = float(np.sum((ly - ly.mean()) ** 2))
    return None if tot == 0 else 1.0 - float(np.sum((ly - lp) ** 2)) / tot


def aic(sse: float, n: int, k: int) -> float:
    """Gaussian AIC up to a constant: n log(SSE/n) + 2k."""
    return n * math.log(max(sse, 1e-300) / n) + 2 * k


def aic_vs_flat(fit: Fit, flat: Fit) -> float:
    """AIC(law) - AIC(flat), both on the same residual scale; negative favours the law."""
    return aic(fit.sse, fit.n, fit.law.k) - aic(flat.sse, flat.n, flat.law.k)


def extrapolation(law: Law, x: np.ndarray, y: np.ndarray) -> tuple[float | None, float | None]:
    """Fit without the largest x, predict it; relative error against its observed mean."""
    x_max = float(np.max(x))
    keep = x < x_max
    if len(np.unique(x[keep])) < 3:
        return None, x_max
    try:
        fit = fit_law(law, x[keep], y[keep])
    except Insufficient:
        return None, x_max
    observed = float(np.mean(y[x == x_max]))
    if observed == 0:
        return None, x_max
    pred = float(predict(fit.params, np.array([x_max]))[0])
    return abs(pred - observed) / abs(observed), x_max


def stability(values: np.ndarray, configs: np.ndarray) -> tuple[float | None, int]:
    """Mean over configurations of the coefficient of variation across their seeds.

    CV = sample std / |mean| of a configuration's seeds; returns (mean CV, number of
    configurations with at least two finite values and a non-zero mean).
    """
    ok = np.isfinite(values)
    _, inv = np.unique(configs[ok], return_inverse=True)
    v = values[ok]
    n = np.bincount(inv)
    mean = np.bincount(inv, weights=v) / np.maximum(n, 1)
    ss = np.bincount(inv, weights=(v - mean[inv]) ** 2)
    keep = (n >= 2) & (mean != 0)
    if not keep.any():
        return None, 0
    cv = np.sqrt(ss[keep] / (n[keep] - 1)) / np.abs(mean[keep])
    return float(np.mean(cv)), int(keep.sum())


def agreement(values: np.ndarray, acc: np.ndarray | None, configs: np.ndarray):
    """Kendall tau between per-configuration means of a metric and of eval_acc.

    A metric that orders configurations exactly as accuracy does has tau = +1, or -1 for a
    loss-like metric; (None, None) when fewer than 3 configurations have both values.
    """
    if acc is None:
        return None, None
    ok = np.isfinite(values) & np.isfinite(acc)
    cfgs, inv = np.unique(configs[ok], return_inverse=True)
    if len(cfgs) < 3:
        return None, None
    counts = np.bincount(inv)
    m = np.bincount(inv, weights=values[ok]) / counts
    a = np.bincount(inv, weights=acc[ok]) / counts
    if np.ptp(m) == 0 or np.ptp(a) == 0:
        return None, None
    res = stats.kendalltau(m, a)
    return float(res.statistic), float(res.pvalue)


def verdict(trend: str, rho: float, p: float, daic: float | None,
            b: float, b_ci: list[float] | None) -> tuple[str, list[str]]:
    """``holds`` when all three conditions hold, else ``fails`` with a reason for each miss.

    1. Spearman rho has the expected sign with p < ALPHA;
    2. the law beats the flat model: AIC(law) - AIC(flat) < -AIC_MARGIN;
    3. the 95% bootstrap CI of the exponent b excludes 0 on the expected side
       (b > 0 for a quantity that falls with x, b < 0 for one that rises).
    """
    want = -1 if trend == "falls" else 1
    reasons = []
    if not (np.isfinite(rho) and np.sign(rho) == want and p < ALPHA):
        shown = "undefined (constant values)" if not np.isfinite(rho) else \
            f"{rho:+.2f} (p={p:.2g})"
        reasons.append(f"Spearman rho {shown} is not a significant {trend} trend")
    if daic is None or not daic < -AIC_MARGIN:
        reasons.append(f"does not beat the flat model (AIC difference "
                       f"{'n/a' if daic is None else f'{daic:.1f}'}, needs < {-AIC_MARGIN:g})")
    if b_ci is None:
        reasons.append("no bootstrap interval for b")
    else:
        lo, hi = b_ci
        ok = lo > 0 if trend == "falls" else hi < 0
        if not ok:
            reasons.append(f"95% CI of b [{lo:.3g}, {hi:.3g}] does not exclude 0 on the "
                           f"{'positive' if trend == 'falls' else 'negative'} side "
                           f"(b = {b:.3g})")
    return (HOLDS if not reasons else FAILS), reasons
