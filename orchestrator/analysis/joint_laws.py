"""Joint scaling laws over two or three axes, as log-sum-exp forms fitted in log space.

- ``additive`` (Chinchilla, Hoffmann et al. 2022): ``L = E + A/N^alpha + B/D^beta (+ C/R^gamma)``
- ``multiplicative`` (fine-tuning, Zhang et al., ICLR 2024):
  ``L = A * N^-alpha * D^-beta (* R^-gamma) + E``

Both are written as ``log L = LSE(terms)``: a constant term ``e = log E`` and power terms
``a_t - sum_j alpha_j lx_j`` with ``lx_j = log(x_j / x_ref_j)`` (the axis over its smallest
value, so the fit is equally conditioned for ranks and parameter counts). The additive form
has one power term per axis, the multiplicative form one term over all axes. Fitting the
log of the prediction against the log of the data (as Epoch AI's replication of Chinchilla
does) makes the residuals relative, matching the multiplicative noise of a sweep.

The vector ``theta`` is ``[e, a_1..a_T, alpha_1..alpha_k]``; ``to_params`` maps it to the
named parameters in the units of the axes: ``A_t = exp(a_t) * prod_j x_ref_j^alpha_j``.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from orchestrator.errors import UsageError

EXPONENT_BOUND = 5.0
COEF_NAMES = ("A", "B", "C")
EXPONENT_NAMES = ("alpha", "beta", "gamma")


@dataclass(frozen=True)
class JointLaw:
    """One joint form over ``k`` axes. ``terms[t]`` lists the axes power term t covers."""

    name: str
    k: int
    terms: tuple[tuple[int, ...], ...]
    formula: str

    @property
    def n_theta(self) -> int:
        return 1 + len(self.terms) + self.k

    @property
    def exponents(self) -> tuple[str, ...]:
        return EXPONENT_NAMES[:self.k]

    @property
    def coefficients(self) -> tuple[str, ...]:
        return COEF_NAMES[:len(self.terms)]

    @property
    def param_names(self) -> tuple[str, ...]:
        return ("E",) + self.coefficients + self.exponents

    def bounds(self) -> list[tuple[float | None, float | None]]:
        return [(-50.0, 50.0)] * (1 + len(self.terms)) + [(0.0, EXPONENT_BOUND)] * self.k

    def _terms(self, theta: np.ndarray, LX: np.ndarray) -> np.ndarray:
        """(..., T+1, K) log terms for theta (..., p) and LX (K, k)."""
        theta = np.asarray(theta, dtype=float)
        T = len(self.terms)
        alpha = theta[..., 1 + T:]                                   # (..., k)
        out = [np.broadcast_to(theta[..., :1], theta.shape[:-1] + (LX.shape[0],))]
        for t, axes in enumerate(self.terms):
            lin = sum(alpha[..., j, None] * LX[:, j] for j in axes)
            out.append(theta[..., 1 + t, None] - lin)
        return np.stack(out, axis=-2)

    def log_predict(self, theta: np.ndarray, LX: np.ndarray) -> np.ndarray:
        """log L at the normalised log axes LX (K, k): (K,) or (B, K) for theta (B, p)."""
        z = self._terms(theta, LX)
        m = z.max(axis=-2, keepdims=True)
        return (m + np.log(np.exp(z - m).sum(axis=-2, keepdims=True)))[..., 0, :]

    def log_predict_jac(self, theta: np.ndarray, LX: np.ndarray):
        """log L (..., K) and its Jacobian in theta (..., K, p)."""
        z = self._terms(theta, LX)
        m = z.max(axis=-2, keepdims=True)
        ez = np.exp(z - m)
        tot = ez.sum(axis=-2, keepdims=True)
        s = ez / tot                                                 # softmax (..., T+1, K)
        logf = (m + np.log(tot))[..., 0, :]
        T = len(self.terms)
        cols = [s[..., t, :] for t in range(T + 1)]
        for j in range(self.k):
            w = sum(s[..., 1 + t, :] for t, axes in enumerate(self.terms) if j in axes)
            cols.append(-w * LX[:, j])
        return logf, np.stack(cols, axis=-1)

    def to_params(self, theta: np.ndarray, x_ref: np.ndarray) -> dict[str, np.ndarray]:
        """Named parameters in the units of the axes (arrays for theta (B, p))."""
        theta = np.asarray(theta, dtype=float)
        T = len(self.terms)
        alpha = theta[..., 1 + T:]
        out = {"E": np.exp(theta[..., 0])}
        for t, axes in enumerate(self.terms):
            shift = sum(alpha[..., j] * np.log(x_ref[j]) for j in axes)
            out[COEF_NAMES[t]] = np.exp(theta[..., 1 + t] + shift)
        for j in range(self.k):
            out[EXPONENT_NAMES[j]] = alpha[..., j]
        return out

    def from_params(self, params: dict, x_ref: np.ndarray) -> np.ndarray:
        """theta from named parameters in the units of the axes (inverse of to_params)."""
        T = len(self.terms)
        alpha = np.array([params[n] for n in self.exponents], dtype=float)
        theta = [np.log(params["E"])]
        for t, axes in enumerate(self.terms):
            shift = sum(alpha[j] * np.log(x_ref[j]) for j in axes)
            theta.append(np.log(params[COEF_NAMES[t]]) - shift)
        return np.concatenate([theta, alpha])


def predict(law: JointLaw, params: dict, X: np.ndarray) -> np.ndarray:
    """L at raw axis values X (K, k), from named parameters (scalars, or arrays (B,))."""
    X = np.asarray(X, dtype=float)
    out = np.asarray(params["E"], dtype=float)[..., None] + 0.0 * X[:, 0]
    for t, axes in enumerate(law.terms):
        term = np.asarray(params[COEF_NAMES[t]], dtype=float)[..., None]
        for j in axes:
            term = term * X[:, j] ** -np.asarray(params[EXPONENT_NAMES[j]], float)[..., None]
        out = out + term
    return out


def make(name: str, axes: tuple[str, ...]) -> JointLaw:
    """The joint form ``name`` over ``axes`` (2 or 3 axis names)."""
    k = len(axes)
    if not 2 <= k <= 3:
        raise UsageError(f"--x: a joint law needs 2 or 3 axes, got {k} ({', '.join(axes)})")
    sym = [f"{a}" for a in axes]
    if name == "additive":
        parts = " + ".join(f"{COEF_NAMES[j]}/{sym[j]}^{EXPONENT_NAMES[j]}" for j in range(k))
        return JointLaw(name, k, tuple((j,) for j in range(k)), f"L = E + {parts}")
    if name == "multiplicative":
        parts = " * ".join(f"{sym[j]}^-{EXPONENT_NAMES[j]}" for j in range(k))
        return JointLaw(name, k, (tuple(range(k)),), f"L = A * {parts} + E")
    raise UsageError(f"--joint-law: unknown joint form {name!r}; known: additive, "
                     f"multiplicative (or none)")
