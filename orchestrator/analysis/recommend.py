"""The configuration a fitted joint law predicts best within a compute budget.

For each scaling rule (or all trials when the rows have one rule), the joint law that
extrapolates best (lowest leave-largest-out error) is evaluated over a grid of candidate
configurations: every axis on a geometric grid over its observed range, with the model and
data axes stretched by the budget's ratio to the largest observed FLOPs when the budget is
larger, and ranks as powers of two within the observed range. A candidate's cost is

    FLOPs = tokens x (4 x model_params + 6 x adapter_params)

(the convention of :mod:`.axes`), where the adapter size is regressed from the rows on log
model size and log rank, and the tokens are the candidate's ``tokens_seen`` or, with
``train_size`` as the data axis, regressed from the rows on the axes. The interval of the
recommendation comes from the law's bootstrap draws: the predicted loss at the chosen
configuration under each draw, and each draw's own optimum. The configuration chosen is the
one with the lowest median predicted loss over the bootstrap laws (the point law when there
are fewer than 10 draws), which is steadier than the point law's own optimum when the budget
lies beyond the observed trials. A budget more than
``MAX_EXTRAPOLATION`` times beyond the observed FLOPs (either side) is refused.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from orchestrator.errors import UsageError

from . import axes as flops
from . import select
from .joint_laws import predict

MAX_EXTRAPOLATION = 10.0
GRID_POINTS = 49
CI_LEVEL = 0.95
DATA_AXES = ("tokens_seen", "train_size")


@dataclass
class CostModel:
    """FLOPs of a candidate from its axis values; coefficients regressed from the trials."""

    axes: tuple[str, ...]
    adapter: np.ndarray            # log P = adapter @ [1, log N, log R]
    tokens: np.ndarray | None      # log T = tokens @ [1, log x_1, ...] when T is not an axis
    fixed: dict                    # values of model_params / rank when they are not axes

    def _col(self, X, name):
        if name in self.axes:
            return X[:, self.axes.index(name)]
        return np.full(len(X), self.fixed[name])

    def adapter_params(self, X):
        N, R = self._col(X, "model_params"), self._col(X, "rank")
        return np.exp(self.adapter @ np.vstack([np.ones(len(X)), np.log(N), np.log(R)]))

    def tokens_of(self, X):
        if "tokens_seen" in self.axes:
            return X[:, self.axes.index("tokens_seen")]
        return np.exp(self.tokens @ np.vstack([np.ones(len(X)), *np.log(X).T]))

    def flops(self, X):
        X = np.asarray(X, dtype=float)
        return flops.train_flops(self._col(X, "model_params"), self.adapter_params(X),
                                 self.tokens_of(X))


def _lstsq(design: np.ndarray, target: np.ndarray) -> np.ndarray:
    coef, *_ = np.linalg.lstsq(design, target, rcond=None)
    return coef


def cost_model(cols: dict, axes: tuple[str, ...]) -> CostModel:
    """Regress adapter size (and tokens, when not an axis) from per-trial columns."""
    N, P, T = cols["model_params"], cols["trainable_params"], cols["tokens_seen"]
    R = cols["rank"] if "rank" in cols else np.ones(len(N))
    design = np.column_stack([np.ones(len(N)), np.log(N), np.log(R)])
    adapter = _lstsq(design, np.log(P))
    if np.ptp(np.log(R)) == 0:
        adapter = np.r_[np.log(np.median(P / N ** adapter[1])), adapter[1], 0.0]
    tokens = None
    if "tokens_seen" not in axes:
        X = np.column_stack([cols[a] for a in axes])
        tokens = _lstsq(np.column_stack([np.ones(len(T)), np.log(X)]), np.log(T))
    fixed = {"model_params": float(np.median(N)), "rank": float(np.median(R))}
    return CostModel(axes, adapter, tokens, fixed)


@dataclass
class Choice:
    """The best candidate under one law, with intervals from its bootstrap."""

    group: dict
    form: str
    config: dict[str, float]
    flops: float
    loss: float
    loss_ci: list[float]
    config_ci: dict[str, list[float]]
    extrapolation_rel_error: float | None


@dataclass
class Recommendation:
    best: Choice
    choices: list[Choice]
    budget: float
    budget_kind: str                  # "flops" or "tokens"
    observed: tuple[float, float]     # smallest and largest observed FLOPs (or tokens)
    notes: list[str] = field(default_factory=list)


def candidates(observed: dict[str, np.ndarray], axes: tuple[str, ...], stretch: float):
    """(M, k) candidate configurations over the observed ranges, stretched for a budget."""
    grids = []
    for a in axes:
        lo, hi = float(np.min(observed[a])), float(np.max(observed[a]))
        if a == "rank":
            grids.append(2.0 ** np.arange(np.ceil(np.log2(lo)), np.floor(np.log2(hi)) + 1))
        else:
            grids.append(np.geomspace(lo, hi * (stretch if a in ("model_params",) + DATA_AXES
                                                else 1.0), GRID_POINTS))
    mesh = np.meshgrid(*grids, indexing="ij")
    return np.column_stack([m.ravel() for m in mesh])


def _q(v: np.ndarray) -> list[float]:
    q = 100 * (1 - CI_LEVEL) / 2
    return [float(x) for x in np.percentile(v, [q, 100 - q])]


def choose(result, X: np.ndarray, cost: np.ndarray, budget_ok: np.ndarray) -> Choice:
    """The lowest predicted loss among affordable candidates, with bootstrap intervals."""
    law, axes = result.law, result.axes
    Xa, ca = X[budget_ok], cost[budget_ok]
    pred = predict(law, result.params(), Xa)
    boot = result.boot_params()
    boot_pred = predict(law, boot, Xa)                              # (B, M)
    # the median over the bootstrap laws, not the point law alone: a choice that is good
    # under most plausible laws, which matters most where the budget extrapolates
    i = int(np.argmin(np.median(boot_pred, axis=0) if len(boot_pred) >= 10 else pred))
    at_choice = boot_pred[:, i]
    own = np.argmin(boot_pred, axis=1)
    config_ci = {a: _q(Xa[own, j]) for j, a in enumerate(axes)}
    return Choice(result.group, law.name, {a: float(Xa[i, j]) for j, a in enumerate(axes)},
                  float(ca[i]), float(pred[i]), _q(at_choice), config_ci,
                  result.record.get("extrapolation_rel_error"))


def _refuse(budget, kind, lo, hi) -> UsageError:
    unit = "FLOPs" if kind == "flops" else "tokens"
    return UsageError([
        f"budget {budget:.3g} {unit} lies far outside the fitted range: the trials span "
        f"{lo:.3g} to {hi:.3g} {unit}, and a recommendation extrapolates at most "
        f"{MAX_EXTRAPOLATION:g}x beyond it (allowed: {lo / MAX_EXTRAPOLATION:.3g} to "
        f"{hi * MAX_EXTRAPOLATION:.3g} {unit})"])


def recommend(analysis, points_cols: dict, budget: float, kind: str = "flops") -> Recommendation:
    """Best configuration within ``budget`` (FLOPs, or tokens with ``kind="tokens"``)."""
    if not analysis.joint:
        reasons = [r["message"] for r in analysis.records if r.get("kind") == "joint"]
        raise UsageError(["no joint law could be fitted, so there is nothing to recommend from"]
                         + reasons)
    axes = analysis.joint[0].axes
    model = cost_model(points_cols, axes)
    trial_flops = flops.train_flops(points_cols["model_params"], points_cols["trainable_params"],
                                    points_cols["tokens_seen"])
    spent = trial_flops if kind == "flops" else points_cols["tokens_seen"]
    lo, hi = float(np.min(spent)), float(np.max(spent))
    if budget > hi * MAX_EXTRAPOLATION or budget < lo / MAX_EXTRAPOLATION:
        raise _refuse(budget, kind, lo, hi)
    X = candidates({a: points_cols[a] for a in axes}, axes, max(1.0, budget / hi))
    cost = model.flops(X) if kind == "flops" else model.tokens_of(X)
    ok = cost <= budget
    if not ok.any():
        raise UsageError(f"no candidate configuration fits within {budget:.3g} "
                         f"{'FLOPs' if kind == 'flops' else 'tokens'}; the cheapest costs "
                         f"{cost.min():.3g}")
    best_law = {}
    for res in analysis.joint:
        key = repr(sorted(res.group.items()))
        err = res.record.get("extrapolation_rel_error")
        err = np.inf if err is None else err
        if key not in best_law or err < best_law[key][0]:
            best_law[key] = (err, res)
    choices = [choose(res, X, cost, ok) for _, res in best_law.values()]
    best = min(choices, key=lambda c: c.loss)
    notes = []
    if budget > hi:
        notes.append(f"the budget is {budget / hi:.1f}x the largest observed trial: the "
                     f"recommendation extrapolates the law")
    return Recommendation(best, choices, budget, kind, (lo, hi), notes)


def trial_columns(points) -> dict[str, np.ndarray]:
    """The per-trial numeric columns recommend needs, from reduced points."""
    names = ["model_params", "trainable_params", "tokens_seen", "rank", "train_size"]
    return {n: select.column(points, n) for n in names if n in points.column_names}
