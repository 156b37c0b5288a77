"""Robust point fits with ``scipy.optimize.least_squares`` and bootstrap intervals.

The point fit minimises the soft_l1 loss (quadratic for residuals within ``f_scale``, linear
beyond, so one diverged or mislabelled trial cannot drag the exponent) from several starts
and keeps the best. ``f_scale`` is the noise scale itself: 1.4826 x the median absolute
residual of a plain least-squares fit. Linear-space forms use relative residuals
``(f - y) / y`` when every y is positive: metric noise is roughly multiplicative, and
relative residuals keep the large values at small x from dominating the exponent (absolute
residuals otherwise, reported as such). Intervals are percentiles of the same estimator
re-run on resamples (see :mod:`.solve` for the vectorised solver).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import least_squares

from .laws import Insufficient, Law
from .resample import Resamples
from .solve import fit_many, irls

CI_LEVEL = 0.95


@dataclass
class Axis:
    """Points prepared for one law: x normalised, y in the law's fitting space."""

    ys: np.ndarray         # (n,) y in fitting space (log y for log-space forms)
    x_ref: float           # smallest x: x' = x / x_ref
    lx: np.ndarray         # (K,) log x' of the distinct x values
    k_idx: np.ndarray      # (n,) index into xk
    sw: np.ndarray | None  # (n,) residual scale: 1/y for relative residuals, None for plain
    residuals: str         # "relative", "absolute" or "log"


@dataclass
class Fit:
    """A fitted law: theta in fitting space, a/b/c in the units of x, and its intervals."""

    law: Law
    theta: np.ndarray
    params: dict[str, float]
    sse: float                               # in fitting space
    n: int
    f_scale: float
    weights: np.ndarray                      # robust weights of the point fit
    ci: dict[str, list[float]] | None = None
    boot: dict[str, np.ndarray] | None = None  # raw bootstrap draws of a, b, c
    rescale: float = 1.0
    n_boot_ok: int = 0


def prepare(law: Law, x: np.ndarray, y: np.ndarray) -> Axis:
    """Normalise x and move y into the law's space; raises Insufficient with the reason."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    xk, k_idx = np.unique(x, return_inverse=True)
    if len(xk) < 3:
        raise Insufficient(f"only {len(xk)} distinct x value(s); a law needs at least 3")
    if law.space == "log":
        bad = int(np.sum(y <= 0))
        if bad:
            raise Insufficient(f"the {law.name} form is fitted in log space and {bad} of "
                               f"{len(y)} values are <= 0")
        y, sw, kind = np.log(y), None, "log"
    elif np.all(y > 0):
        sw, kind = 1.0 / y, "relative"
    else:
        sw, kind = None, "absolute"
    x_ref = float(xk[0])
    return Axis(y, x_ref, np.log(xk / x_ref), k_idx, sw, kind)


def robust_scale(r: np.ndarray, y: np.ndarray) -> float:
    """1.4826 x median |residual|: the residual scale of Gaussian noise, ignoring outliers."""
    s = 1.4826 * float(np.median(np.abs(r)))
    floor = 1e-9 * (float(np.std(y)) + float(np.mean(np.abs(y)))) + 1e-300
    return max(s, floor)


def _starts(law: Law, ax: Axis, theta_ls: np.ndarray) -> list[np.ndarray]:
    """The least-squares solution (from the law's own solver) and the law's extra starts
    (for the saturating form, a generic guess from the data's span: a second basin)."""
    starts = [theta_ls, *law.starts(ax.ys, theta_ls)]
    lo, hi = np.array(law.lower), np.array(law.upper)
    eps = 1e-9 * np.maximum(1.0, np.abs(np.nan_to_num(lo, posinf=0, neginf=0)))
    return [np.clip(np.nan_to_num(s), lo + eps, hi - eps) for s in starts
            if np.all(np.isfinite(s))]


def _ls_weights(ax: Axis) -> np.ndarray:
    return np.ones((1, len(ax.ys))) if ax.sw is None else (ax.sw * ax.sw)[None, :]


def fit_point(law: Law, ax: Axis) -> Fit:
    """Robust least_squares fit from several starts; the lowest robust cost wins."""
    lx_pts = ax.lx[ax.k_idx]
    sw = np.ones(len(ax.ys)) if ax.sw is None else ax.sw
    theta_ls = fit_many(law, ax.lx, ax.k_idx, ax.ys, _ls_weights(ax))[0]
    f_scale = robust_scale(sw * (ax.ys - law.model(theta_ls, ax.lx)[ax.k_idx]), sw * ax.ys)
    best = None
    for x0 in _starts(law, ax, theta_ls):
        res = least_squares(lambda t: sw * (law.model(t, lx_pts) - ax.ys), x0,
                            jac=lambda t: sw[:, None] * law.jac(t, lx_pts),
                            bounds=(law.lower, law.upper), loss="soft_l1", f_scale=f_scale,
                            method="trf")
        if np.all(np.isfinite(res.x)) and (best is None or res.cost < best.cost):
            best = res
    if best is None:
        raise Insufficient(f"the {law.name} fit did not converge")
    r = sw * (law.model(best.x, lx_pts) - ax.ys)
    params = {k: float(v) for k, v in law.to_params(best.x, ax.x_ref).items()}
    return Fit(law, best.x, params, float(np.sum(r * r)), len(ax.ys), f_scale,
               weights=1.0 / np.sqrt(1.0 + (r / f_scale) ** 2))


def fit_flat_ls(ax: Axis, flat: Law) -> Fit:
    """Plain least-squares flat model on the same residual scale as a law's fit.

    The baseline of the AIC comparison: least squares gives the flat model its smallest
    SSE, so the comparison never flatters the law.
    """
    theta = fit_many(flat, ax.lx, ax.k_idx, ax.ys, _ls_weights(ax))[0]
    sw = 1.0 if ax.sw is None else ax.sw
    r = sw * (ax.ys - theta[0])
    params = {k: float(v) for k, v in flat.to_params(theta, ax.x_ref).items()}
    return Fit(flat, theta, params, float(np.sum(r * r)), len(ax.ys), 1.0, np.ones(len(r)))


def bootstrap(fit: Fit, ax: Axis, res: Resamples) -> Fit:
    """Re-fit on every resample and attach percentile intervals.

    Deviations from the point estimate are multiplied by ``res.rescale`` (see
    :func:`.resample.rescale_factor`) before the percentiles are taken. Resamples that
    cover fewer than 3 distinct x, or whose fit is not finite, are left out.
    """
    theta = irls(fit.law, ax.lx, ax.k_idx, ax.ys, res.counts, fit.f_scale, sw=ax.sw,
                 w0=fit.weights)
    valid = (res.n_x >= 3) & np.all(np.isfinite(theta), axis=1)
    fit.n_boot_ok = int(valid.sum())
    if fit.n_boot_ok < 10:
        return fit
    fit.boot, fit.rescale = fit.law.to_params(theta[valid], ax.x_ref), res.rescale
    q = 100 * (1 - CI_LEVEL) / 2
    fit.ci = {}
    for k, v in fit.boot.items():
        lo, hi = np.percentile(v, [q, 100 - q])
        p = fit.params[k]
        lo_b, hi_b = fit.law.bounds.get(k, (-np.inf, np.inf))
        # widened by the rescale factor, kept within the parameter's range, and always
        # containing the point estimate (in a flat direction of the loss the point fit
        # and the resample fits can stop at different ends of the valley)
        lo = min(float(np.clip(p + res.rescale * (lo - p), lo_b, hi_b)), p)
        hi = max(float(np.clip(p + res.rescale * (hi - p), lo_b, hi_b)), p)
        fit.ci[k] = [lo, hi]
    return fit


def fit_law(law: Law, x: np.ndarray, y: np.ndarray, res: Resamples | None = None) -> Fit:
    """Point fit, plus bootstrap intervals when resamples of the same points are given."""
    ax = prepare(law, x, y)
    fit = fit_point(law, ax)
    if res is not None:
        bootstrap(fit, ax, res)
    return fit
