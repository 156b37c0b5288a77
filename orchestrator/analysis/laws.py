"""Scaling-law forms, registered under the names used in reports and ``fits.json``.

Every form is fitted over the normalised axis ``x' = x / x_ref`` (``x_ref`` = smallest x) and
in terms of ``lx = log x'``, so the fit is equally well conditioned whether x is a LoRA rank
(1..64) or a parameter count (1e6..1e9). ``to_params`` maps the fitted vector ``theta`` back
to ``a``, ``b``, ``c`` of ``y = a * x^(-b) + c`` in the units of x; all three forms are
special cases of that one expression, so plotting and prediction share :func:`predict`.

A law carries everything the fitting code needs (its model, Jacobian, vectorised solver and
extra starting points), so a form registered with :func:`register_law` from outside this
package fits exactly like the built-in ones: nothing looks a law up by its name.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from orchestrator.errors import UsageError

from .solve import B_BOUND, solve_flat, solve_line, solve_saturating


class Insufficient(Exception):
    """The data cannot support the requested fit; the message says why, in plain words."""


@dataclass(frozen=True)
class Law:
    """One law form: its fitted vector, its model in fitting space and the map back to a, b, c.

    ``space`` is where residuals are taken: ``linear`` (y - f) or ``log`` (log y - log f).
    ``model(theta, lx)`` broadcasts: ``theta`` of shape (k,) or (B, k); with (B, k) the
    result is (B, len(lx)).

    ``solver(lx, W, S, Q, ybar, prev=None)`` is the weighted least-squares fit from per-x
    sums (see :mod:`.solve`): W, S, Q are (B, K) sums of weights, weighted y and weighted
    y^2 with y centred on ``ybar``; it returns theta (B, k). ``prev`` is the previous
    iterate of a reweighting loop, which a solver may start from. ``starts(ys, theta_ls)``
    returns extra starting points for the robust point fit besides the least-squares one
    (``ys`` the points in fitting space).
    """

    name: str
    formula: str
    space: str
    theta_names: tuple[str, ...]
    lower: tuple[float, ...]
    upper: tuple[float, ...]
    model: Callable[[np.ndarray, np.ndarray], np.ndarray]
    jac: Callable[[np.ndarray, np.ndarray], np.ndarray]
    to_params: Callable[[np.ndarray, float], dict]
    solver: Callable[..., np.ndarray]
    starts: Callable[[np.ndarray, np.ndarray], list] = lambda ys, theta_ls: []
    exponent: str | None = "b"  # the parameter whose CI must exclude 0
    bounds: dict = field(default_factory=dict)  # range of a, b, c an interval is clipped to

    @property
    def k(self) -> int:
        return len(self.theta_names)


def _col(theta: np.ndarray, i: int) -> np.ndarray:
    """Column i of theta, shaped to broadcast against lx for both (k,) and (B, k) inputs."""
    return np.asarray(theta, dtype=float)[..., i, None]


def predict(params: dict, x: np.ndarray) -> np.ndarray:
    """``a * x^(-b) + c`` in the units of x: the common expression of every form."""
    x = np.asarray(x, dtype=float)
    return params["a"] * x ** (-params["b"]) + params["c"]


def _sat_model(theta, lx):
    return _col(theta, 0) * np.exp(-_col(theta, 1) * lx) + _col(theta, 2)


def _sat_jac(theta, lx):
    a, b = float(theta[0]), float(theta[1])
    u = np.exp(-b * lx)
    return np.column_stack([u, -a * lx * u, np.ones_like(lx)])


def _sat_params(theta, x_ref):
    theta = np.asarray(theta, dtype=float)
    b = theta[..., 1]
    return {"a": theta[..., 0] * x_ref ** b, "b": b, "c": theta[..., 2]}


def _sat_starts(ys, theta_ls):
    """A generic guess from the data's span: the second basin of the saturating form."""
    span = float(np.ptp(ys)) or 1.0
    sign = 1.0 if theta_ls[1] >= 0 else -1.0
    return [np.array([span, 0.5 * sign, float(np.min(ys))])]


def _pow_model(theta, lx):
    return _col(theta, 0) - _col(theta, 1) * lx


def _pow_jac(theta, lx):
    return np.column_stack([np.ones_like(lx), -lx])


def _pow_params(theta, x_ref):
    theta = np.asarray(theta, dtype=float)
    b = theta[..., 1]
    return {"a": np.exp(theta[..., 0]) * x_ref ** b, "b": b, "c": np.zeros_like(b)}


def _flat_model(theta, lx):
    return _col(theta, 0) + 0.0 * lx


def _flat_jac(theta, lx):
    return np.ones((len(lx), 1))


def _flat_params(theta, x_ref):
    c = np.asarray(theta, dtype=float)[..., 0]
    return {"a": np.zeros_like(c), "b": np.zeros_like(c), "c": c}


LAWS: dict[str, Law] = {}


def register_law(law: Law) -> Law:
    """Add a form to the registry; names are unique so a report never mixes two meanings."""
    if law.name in LAWS:
        raise ValueError(f"law form {law.name!r} is already registered")
    if law.space not in ("linear", "log"):
        raise ValueError(f"law form {law.name!r}: space must be 'linear' or 'log'")
    if not callable(law.solver):
        raise ValueError(f"law form {law.name!r}: solver must be callable")
    LAWS[law.name] = law
    return law


def get_law(name: str) -> Law:
    if name not in LAWS:
        raise UsageError(f"--law: unknown law form {name!r}; known: {', '.join(sorted(LAWS))}")
    return LAWS[name]


register_law(Law(
    name="saturating", formula="y = a * x^(-b) + c", space="linear",
    theta_names=("a", "b", "c"), lower=(0.0, -B_BOUND, -np.inf), upper=(np.inf, B_BOUND, np.inf),
    model=_sat_model, jac=_sat_jac, to_params=_sat_params, solver=solve_saturating,
    starts=_sat_starts, bounds={"a": (0.0, np.inf), "b": (-B_BOUND, B_BOUND)},
))
register_law(Law(
    name="power", formula="log y = log a - b * log x", space="log",
    theta_names=("log_a", "b"), lower=(-np.inf, -np.inf), upper=(np.inf, np.inf),
    model=_pow_model, jac=_pow_jac, to_params=_pow_params, solver=solve_line, bounds={"a": (0.0, np.inf)},
))
register_law(Law(
    name="flat", formula="y = c", space="linear",
    theta_names=("c",), lower=(-np.inf,), upper=(np.inf,),
    model=_flat_model, jac=_flat_jac, to_params=_flat_params, solver=solve_flat,
    exponent=None,
))
