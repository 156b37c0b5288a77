"""Fitting a joint law: robust point fit from a grid of starts, and a batched bootstrap.

The points are configurations: each configuration's seeds are averaged (the mean of log y
over its seeds), so seed noise is averaged before the fit and a configuration is one
cluster of the bootstrap. The loss is Huber on log residuals, ``delta = 1e-3`` by default
(Epoch AI's replication of Chinchilla): quadratic for tiny residuals, linear beyond, so a
few configurations far off the law (a diverged run, a mislabelled model) cannot drag the
exponents. The point fit evaluates the loss at a grid of starting points (exponents and E
on a grid, the coefficients solved by least squares for each), runs L-BFGS-B from the best
few and polishes the winner with the batched solver below, so point fit and bootstrap use
one estimator.

The batched solver fits every bootstrap resample at once: Levenberg-Marquardt steps on
iteratively reweighted least squares (Huber weights ``min(1, delta/|r|)``), where a law
predicts one value per distinct cell (combination of axis values), so the normal equations
need only per-cell sums, never a (resamples x points x parameters) array.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
from scipy.optimize import minimize
from threadpoolctl import threadpool_limits

from .joint_laws import EXPONENT_BOUND, JointLaw

HUBER_DELTA = 1e-3
N_POLISH = 4          # L-BFGS-B runs from the best grid starts
_EXP_GRID = (0.1, 0.3, 0.6, 1.0)
_E_FRACTIONS = (0.0, 0.5, 0.8, 0.95)


class JointInsufficient(Exception):
    """The points cannot support this joint fit; the message says why."""


@dataclass
class Points:
    """Configuration points prepared for a joint fit over k axes."""

    X: np.ndarray          # (n, k) raw axis values per configuration
    ly: np.ndarray         # (n,) mean over seeds of log y
    cell: np.ndarray       # (n,) index of the configuration's cell; points sorted by cell
    XK: np.ndarray         # (K, k) axis values of the cells
    LX: np.ndarray         # (K, k) log(XK / x_ref)
    x_ref: np.ndarray      # (k,) smallest value of each axis
    edges: np.ndarray      # (K,) first point of each cell


def points(X: np.ndarray, ly: np.ndarray) -> Points:
    """Sort configuration points by cell and normalise the axes."""
    X, ly = np.asarray(X, dtype=float), np.asarray(ly, dtype=float)
    XK, cell = np.unique(X, axis=0, return_inverse=True)
    cell = cell.ravel()
    order = np.argsort(cell, kind="stable")
    X, ly, cell = X[order], ly[order], cell[order]
    x_ref = XK.min(axis=0)
    edges = np.searchsorted(cell, np.arange(len(XK)))
    return Points(X, ly, cell, XK, np.log(XK / x_ref), x_ref, edges)


def check(law: JointLaw, p: Points, axes: tuple[str, ...]) -> None:
    """Raise JointInsufficient when an axis has too few values or the cells too few points."""
    for j, name in enumerate(axes):
        n = len(np.unique(p.XK[:, j]))
        if n < 2:
            raise JointInsufficient(f"{name} has {n} distinct value(s); a joint law needs "
                                    f"at least 2 on every axis")
    if len(p.XK) < law.n_theta + 1:
        raise JointInsufficient(f"only {len(p.XK)} distinct combinations of "
                                f"{', '.join(axes)}; the {law.name} form has {law.n_theta} "
                                f"parameters and needs at least {law.n_theta + 1}")


def huber(r: np.ndarray, delta: float) -> np.ndarray:
    a = np.abs(r)
    return np.where(a <= delta, 0.5 * r * r, delta * (a - 0.5 * delta))


def objective(law: JointLaw, p: Points, theta: np.ndarray, counts=None,
              delta: float = HUBER_DELTA) -> np.ndarray:
    """Huber loss / delta of the log residuals, per row of theta (B, p)."""
    logf = law.log_predict(np.atleast_2d(theta), p.LX)[:, p.cell]
    rho = huber(p.ly - logf, delta) / delta
    return (rho if counts is None else rho * counts).sum(axis=1)


def _cell_sums(v: np.ndarray, edges: np.ndarray) -> np.ndarray:
    return np.add.reduceat(v, edges, axis=1)


def grid_starts(law: JointLaw, p: Points) -> np.ndarray:
    """Starting points (S, p): exponents and E on a grid, coefficients by least squares."""
    K = len(p.XK)
    ymean = np.exp(_cell_sums(p.ly[None, :], p.edges)[0] / np.bincount(p.cell, minlength=K))
    y_min = float(ymean.min())
    starts = []
    for frac in _E_FRACTIONS:
        E = frac * y_min
        e = np.log(max(E, 1e-6 * y_min))
        rest = ymean - E
        if law.name == "multiplicative" or len(law.terms) == 1:
            design = np.column_stack([np.ones(K), -p.LX])
            coef, *_ = np.linalg.lstsq(design, np.log(rest), rcond=None)
            alpha = np.clip(coef[1:], 0.01, EXPONENT_BOUND)
            starts.append(np.r_[e, coef[0], alpha])
            continue
        for alpha in itertools.product(_EXP_GRID, repeat=law.k):
            alpha = np.asarray(alpha)
            U = np.exp(-p.LX * alpha)                                # (K, k): one term per axis
            coef, *_ = np.linalg.lstsq(U, rest, rcond=None)
            coef = np.maximum(coef, 1e-3 * y_min)
            starts.append(np.r_[e, np.log(coef), alpha])
    return np.array(starts)


def _lbfgs(law: JointLaw, p: Points, x0: np.ndarray, delta: float):
    """L-BFGS-B on the Huber loss. BLAS is held to one thread: scipy's L-BFGS-B calls it on
    vectors of a few elements, where extra threads only spin (100x slower on shared cores)."""
    def fun(theta):
        logf, J = law.log_predict_jac(theta, p.LX)
        r = p.ly - logf[p.cell]
        psi = np.clip(r, -delta, delta) / delta
        per_cell = np.add.reduceat(psi, p.edges)
        return float(huber(r, delta).sum() / delta), -(per_cell @ J)

    with threadpool_limits(limits=1, user_api="blas"):
        return minimize(fun, x0, jac=True, method="L-BFGS-B", bounds=law.bounds(),
                        options={"maxiter": 500, "ftol": 1e-13, "gtol": 1e-9})


TOL, LAM_MAX = 1e-10, 1e2  # a resample stops when its loss moves less, or no step helps
BLOCK = 64   # resamples solved together: (64, n) temporaries stay in cache, and the large
             # ones that a whole (1000, n) batch needs cost more in page faults than in sums


def solve_batch(law: JointLaw, p: Points, theta0: np.ndarray, counts: np.ndarray | None = None,
                delta: float = HUBER_DELTA, iters: int = 40) -> np.ndarray:
    """Robust fits, one per row of ``counts`` (B, n) (all ones without), from theta0 (B, p).

    Levenberg-Marquardt on the reweighted least-squares problem; a step is kept only where it
    lowers that resample's Huber loss, and the damping adapts per resample. A resample stops
    when its loss no longer moves (relative 1e-10) or after ``iters`` steps.
    """
    theta0 = np.atleast_2d(theta0)
    B = counts.shape[0] if counts is not None else theta0.shape[0]
    theta = np.array(np.broadcast_to(theta0, (B, law.n_theta)), dtype=float)
    c = np.ones((B, len(p.ly))) if counts is None else np.asarray(counts, dtype=float)
    for start in range(0, B, BLOCK):
        rows = slice(start, start + BLOCK)
        theta[rows] = _solve_block(law, p, theta[rows], c[rows], delta, iters)
    return theta


def _solve_block(law: JointLaw, p: Points, theta: np.ndarray, c: np.ndarray, delta: float,
                 iters: int) -> np.ndarray:
    B = theta.shape[0]
    lo = np.array([b[0] for b in law.bounds()])
    hi = np.array([b[1] for b in law.bounds()])
    lam = np.full(B, 1e-3)
    obj = objective(law, p, theta, c, delta)
    eye = np.eye(law.n_theta)
    active = np.arange(B)   # resamples still moving; converged ones are left alone
    for _ in range(iters):
        th, ca, la = theta[active], c[active], lam[active]
        logf, J = law.log_predict_jac(th, p.LX)                      # (b, K), (b, K, p)
        r = p.ly[None, :] - logf[:, p.cell]
        w = ca * np.minimum(1.0, delta / np.maximum(np.abs(r), 1e-300))
        W = _cell_sums(w, p.edges)
        S = _cell_sums(w * r, p.edges)
        JW = J * W[..., None]
        H = np.einsum("bkp,bkq->bpq", JW, J, optimize=True)  # 10x the unoptimised path
        g = np.einsum("bk,bkp->bp", S, J)
        diag = np.einsum("bpp->bp", H)
        A = H + (la[:, None] * np.maximum(diag, 1e-12))[:, :, None] * eye + 1e-12 * eye
        try:
            step = np.linalg.solve(A, g[..., None])[..., 0]
        except np.linalg.LinAlgError:
            step = np.stack([np.linalg.lstsq(a, v, rcond=None)[0] for a, v in zip(A, g)])
        new = np.clip(th + np.nan_to_num(step), lo, hi)
        new_obj = objective(law, p, new, ca, delta)
        old_obj = obj[active]
        better = new_obj < old_obj
        gain = np.where(better, old_obj - new_obj, 0.0)
        theta[active[better]], obj[active[better]] = new[better], new_obj[better]
        lam[active] = np.where(better, la / 3.0, la * 4.0)
        # done: the loss stopped moving (relative 1e-10), or no step helps any more
        moving = (better & (gain > TOL * np.abs(old_obj))) | (~better & (lam[active] < LAM_MAX))
        active = active[moving]
        if not len(active):
            break
    return theta


def fit_point(law: JointLaw, p: Points, delta: float = HUBER_DELTA) -> np.ndarray:
    """The robust point fit: grid of starts, L-BFGS-B from the best few, batched polish."""
    starts = grid_starts(law, p)
    starts = starts[np.all(np.isfinite(starts), axis=1)]
    if not len(starts):
        raise JointInsufficient(f"no finite starting point for the {law.name} form")
    obj = objective(law, p, starts, delta=delta)
    best = None
    for i in np.argsort(obj)[:N_POLISH]:
        res = _lbfgs(law, p, starts[i], delta)
        if np.all(np.isfinite(res.x)) and (best is None or res.fun < best.fun):
            best = res
    if best is None:
        raise JointInsufficient(f"the {law.name} fit did not converge")
    polished = solve_batch(law, p, best.x[None, :], delta=delta, iters=40)[0]
    return polished if objective(law, p, polished, delta=delta)[0] <= best.fun else best.x


def cluster_counts(n: int, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """(n_boot, n) draw counts: configurations (seed clusters) redrawn with replacement."""
    pick = rng.integers(0, n, size=(n_boot, n))
    flat = (pick + np.arange(n_boot)[:, None] * n).ravel()
    return np.bincount(flat, minlength=n_boot * n).reshape(n_boot, n).astype(float)


def bootstrap(law: JointLaw, p: Points, theta: np.ndarray, n_boot: int, seed,
              delta: float = HUBER_DELTA, iters: int = 40, counts=None) -> np.ndarray:
    """theta (B', p) of the resamples whose fit is finite and covers every axis twice."""
    if counts is None:
        counts = cluster_counts(len(p.ly), n_boot, np.random.default_rng(seed))
    ok = np.ones(len(counts), dtype=bool)
    for j in range(law.k):
        _, inv = np.unique(p.X[:, j], return_inverse=True)
        covered = np.stack([counts[:, inv.ravel() == v].sum(1) > 0 for v in range(inv.max() + 1)])
        ok &= covered.sum(0) >= 2
    counts = counts[ok]
    thetas = solve_batch(law, p, theta[None, :], counts, delta=delta, iters=iters)
    return thetas[np.all(np.isfinite(thetas), axis=1)]
