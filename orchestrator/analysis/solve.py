"""Many weighted fits at once: bootstrap resamples and starting points, without a Python loop.

Every form predicts one value per distinct x, so a weighted least-squares fit only needs, per
distinct x, the sums ``W = sum w``, ``S = sum w y`` and ``Q = sum w y^2`` (y centred on its
mean, so the SSE expansion keeps its precision); every solver works from these (B, K) sums
alone. The saturating form is linear in (a, c) for a fixed b, so b is profiled, with (a, c)
solved in closed form at each b: a grid over [-B_BOUND, B_BOUND] and a golden-section
search, or parabolic steps from a previous solution. The robust loss (soft_l1) is reached by
iteratively reweighted least squares, whose fixed point is the same M-estimate that
``scipy.optimize.least_squares(loss="soft_l1")`` finds for the point fit.
"""
from __future__ import annotations

import numpy as np

# |b| above this turns x^-b into a step function over any axis a sweep spans.
B_BOUND = 5.0
_GRID = np.linspace(-B_BOUND, B_BOUND, 81)
_GOLD = (np.sqrt(5.0) - 1.0) / 2.0


def _mv(a: np.ndarray, v: np.ndarray) -> np.ndarray:
    """a @ v without BLAS: threaded BLAS on these small products only spins on shared cores."""
    return np.einsum("bm,m->b", a, v)


def sums(weights: np.ndarray, k_idx: np.ndarray, K: int, y: np.ndarray):
    """Per-distinct-x weighted sums W, S, Q, each (B, K), of weights (B, n) and y (n,).

    Every index 0..K-1 must occur in ``k_idx`` (as from ``np.unique(..., return_inverse)``).
    """
    order = np.argsort(k_idx, kind="stable")
    if np.any(np.diff(order) != 1):
        weights, y, k_idx = weights[:, order], y[order], k_idx[order]
    edges = np.searchsorted(k_idx, np.arange(K))
    W = np.add.reduceat(weights, edges, axis=1)
    S = np.add.reduceat(weights * y, edges, axis=1)
    Q = np.add.reduceat(weights * (y * y), edges, axis=1)
    return W, S, Q


def _solve_ac(Sw, Su, Suu, Sy, Suy, Syy):
    """Closed-form weighted LS of y on (u, 1) with a >= 0; returns a, c and the weighted SSE."""
    den = Sw * Suu - Su * Su
    with np.errstate(divide="ignore", invalid="ignore"):
        a = (Sw * Suy - Su * Sy) / den
        a = np.where((den > 1e-12 * Sw * Suu) & (a > 0), a, 0.0)
        c = (Sy - a * Su) / Sw
    sse = Syy - 2 * a * Suy - 2 * c * Sy + a * a * Suu + 2 * a * c * Su + c * c * Sw
    return a, c, sse


def _golden(f, lo, hi, rounds: int):
    """Vectorised golden-section search for the minimum of f on [lo, hi] (arrays)."""
    x1, x2 = hi - _GOLD * (hi - lo), lo + _GOLD * (hi - lo)
    f1, f2 = f(x1), f(x2)
    for _ in range(rounds):
        left = f1 < f2                                          # minimum lies in [lo, x2]
        hi, lo = np.where(left, x2, hi), np.where(left, lo, x1)
        new = np.where(left, hi - _GOLD * (hi - lo), lo + _GOLD * (hi - lo))
        fnew = f(new)
        x1, x2, f1, f2 = (np.where(left, new, x2), np.where(left, x1, new),
                          np.where(left, fnew, f2), np.where(left, f1, fnew))
    return (lo + hi) / 2


def _parabolic(f, b, steps=(0.02, 0.004)):
    """Refine a nearby minimum: per step, fit a parabola through b - h, b, b + h, try its
    vertex (kept within 2h), keep the best of the four. 7 evaluations of f in all."""
    fb = f(b)
    for h in steps:
        x0 = np.clip(b - h, -B_BOUND, B_BOUND)
        x2 = np.clip(b + h, -B_BOUND, B_BOUND)
        f0, f2 = f(x0), f(x2)
        num = (b - x0) ** 2 * (fb - f2) - (b - x2) ** 2 * (fb - f0)
        den = (b - x0) * (fb - f2) - (b - x2) * (fb - f0)
        with np.errstate(divide="ignore", invalid="ignore"):
            v = np.where(den != 0, b - 0.5 * num / den, b)
        v = np.clip(np.nan_to_num(v, nan=0.0), np.maximum(b - 2 * h, -B_BOUND),
                    np.minimum(b + 2 * h, B_BOUND))
        fv = f(v)
        cand = np.stack([x0, b, x2, v])
        vals = np.stack([f0, fb, f2, fv])
        best = np.argmin(vals, axis=0)
        cols = np.arange(len(b))
        b, fb = cand[best, cols], vals[best, cols]
    return b


def solve_saturating(lx, W, S, Q, ybar, prev=None):
    """Weighted LS fit of ``a exp(-b lx) + c`` from per-x sums: theta (B, 3).

    Without ``prev`` the search takes the best point of a grid over all b, then a golden-
    section search one grid step either side (b to ~4e-5). From ``prev`` (B, 3), the previous
    IRLS iterate, two parabolic steps around its b suffice: reweighting moves b very little.
    """
    Sw, Sy, Syy = W.sum(1), S.sum(1), Q.sum(1)

    def at(b):
        u = np.exp(-b[:, None] * lx[None, :])
        return _solve_ac(Sw, (W * u).sum(1), (W * u * u).sum(1), Sy, (S * u).sum(1), Syy)

    if prev is None:
        U = np.exp(-_GRID[:, None] * lx[None, :])                # (G, K)
        # (B, K) x (G, K) -> (B, G) with einsum rather than BLAS (see _mv)
        _, _, sse = _solve_ac(Sw[:, None], np.einsum("bk,gk->bg", W, U),
                              np.einsum("bk,gk->bg", W, U * U), Sy[:, None],
                              np.einsum("bk,gk->bg", S, U), Syy[:, None])
        b_start = _GRID[np.argmin(sse, axis=1)]
        step = _GRID[1] - _GRID[0]
        b = _golden(lambda v: at(v)[2], np.clip(b_start - step, -B_BOUND, B_BOUND),
                    np.clip(b_start + step, -B_BOUND, B_BOUND), 18)
    else:
        b_start = np.asarray(prev, dtype=float)[:, 1]
        b = _parabolic(lambda v: at(v)[2], b_start)
    a, c, sse = at(b)
    a0, c0, sse0 = at(b_start)
    better = sse <= sse0
    return np.column_stack([np.where(better, a, a0), np.where(better, b, b_start),
                            np.where(better, c, c0) + ybar])


def solve_line(lx, W, S, Q, ybar, prev=None):
    """Weighted LS line ``y = i - b lx`` from per-x sums: theta (B, 2) = (intercept, b)."""
    Sw, Sx, Sxx = W.sum(1), _mv(W, lx), _mv(W, lx * lx)
    Sy, Sxy = S.sum(1), _mv(S, lx)
    den = Sw * Sxx - Sx * Sx
    with np.errstate(divide="ignore", invalid="ignore"):
        slope = np.where(den > 0, (Sw * Sxy - Sx * Sy) / den, np.nan)
        icpt = (Sy - slope * Sx) / Sw
    return np.column_stack([icpt + ybar, -slope])


def solve_flat(lx, W, S, Q, ybar, prev=None):
    """Weighted mean from per-x sums: theta (B, 1)."""
    return (S.sum(1) / W.sum(1) + ybar)[:, None]


def fit_many(law, lx, k_idx, y, weights):
    """Weighted least-squares fits of ``law`` (a :class:`.laws.Law`), one per row of
    ``weights`` (B, n), by the law's own solver."""
    ybar = float(np.mean(y))
    return law.solver(lx, *sums(weights, k_idx, len(lx), y - ybar), ybar)


def irls(law, lx, k_idx, y, counts, f_scale: float, sw=None, w0=None, iters: int = 3):
    """Robust (soft_l1) fits of ``law`` for every row of ``counts`` (B, n): theta (B, k).

    ``y`` is in the law's fitting space; residuals are ``sw * (y - f)`` (``sw`` = 1/y gives
    relative residuals). ``w0`` (n,) are starting robust weights, e.g. those of the point
    fit; from there three reweightings put interval ends within about 1% of their width of
    a fully converged IRLS. The weights are formed and summed one block of equal x at a
    time, so the (B, n) work stays in cache and no (B, n) temporary is kept.
    """
    solver = law.solver
    order = np.argsort(k_idx, kind="stable")
    if np.any(order != np.arange(len(order))):  # blocks need the points grouped by x
        k_idx, y, counts = k_idx[order], y[order], counts[:, order]
        sw = None if sw is None else sw[order]
        w0 = None if w0 is None else w0[order]
    K = len(lx)
    edges = np.searchsorted(k_idx, np.arange(K + 1))
    ybar = float(np.mean(y))
    yc = y - ybar
    sw = np.ones(len(y)) if sw is None else np.asarray(sw, dtype=float)
    sw2 = sw * sw
    scale, shift = sw / f_scale, y * sw / f_scale
    W, S, Q = (np.empty((counts.shape[0], K)) for _ in range(3))
    theta = None
    for _ in range(iters + 1):
        pred = None if theta is None else law.model(theta, lx)
        for k in range(K):
            sl = slice(edges[k], edges[k + 1])
            if pred is None:
                w = counts[:, sl] * (sw2[sl] * (1.0 if w0 is None else w0[sl]))
            else:
                r = shift[sl] - pred[:, k, None] * scale[sl]
                r *= r
                r += 1.0
                w = counts[:, sl] * (sw2[sl] / np.sqrt(r))
            W[:, k] = w.sum(1)
            S[:, k] = _mv(w, yc[sl])
            Q[:, k] = _mv(w, yc[sl] * yc[sl])
        theta = solver(lx, W, S, Q, ybar, prev=theta)
    return theta
