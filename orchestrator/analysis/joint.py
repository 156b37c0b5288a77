"""Joint fits over two or three axes: one record per (group, metric, form), and a comparison
of how well the forms extrapolate.

Each record has the keys of a one-axis record (``kind: "joint"``, ``axes`` the axes in
order, ``x`` them comma-joined). A joint law **holds** when every exponent's 95% bootstrap
interval lies above 0 (the quantity falls along every axis) and the law beats a constant by
more than 2 AIC units on log residuals; it **fails** otherwise, with a reason per miss.
Extrapolation: refit without the configurations at the largest value of the first axis,
predict those cells, and compare with the observed mean of each (mean relative error).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import checks
from . import joint_fit as jf
from .joint_laws import JointLaw, make, predict

CI_LEVEL = 0.95


@dataclass
class JointResult:
    """A fitted joint law with its bootstrap draws, kept for ``recommend``."""

    law: JointLaw
    axes: tuple[str, ...]
    metric: str
    group: dict
    points: jf.Points
    theta: np.ndarray
    boot: np.ndarray            # (B', p) bootstrap thetas
    record: dict

    def params(self) -> dict[str, float]:
        return {k: float(v) for k, v in self.law.to_params(self.theta, self.points.x_ref).items()}

    def boot_params(self) -> dict[str, np.ndarray]:
        return self.law.to_params(self.boot, self.points.x_ref)


def configuration_points(X: np.ndarray, y: np.ndarray, cfg: np.ndarray):
    """Mean of log y over each configuration's seeds: (X per configuration, mean log y)."""
    key = np.column_stack([np.unique(cfg, return_inverse=True)[1].ravel(), X])
    uniq, inv = np.unique(key, axis=0, return_inverse=True)
    inv = inv.ravel()
    ly = np.bincount(inv, weights=np.log(y)) / np.bincount(inv)
    return uniq[:, 1:], ly


def extrapolation(law: JointLaw, p: jf.Points, X: np.ndarray, y: np.ndarray,
                  delta: float) -> tuple[float | None, float | None]:
    """Fit without the largest first-axis value; mean relative error on the held-out cells."""
    x_max = float(p.X[:, 0].max())
    keep = p.X[:, 0] < x_max
    try:
        q = jf.points(p.X[keep], p.ly[keep])
        jf.check(law, q, tuple(f"axis {j}" for j in range(law.k)))
        theta = jf.fit_point(law, q, delta)
    except jf.JointInsufficient:
        return None, x_max
    held = X[:, 0] == x_max
    cells, inv = np.unique(X[held], axis=0, return_inverse=True)
    observed = np.bincount(inv.ravel(), weights=y[held]) / np.bincount(inv.ravel())
    pred = predict(law, law.to_params(theta, q.x_ref), cells)
    return float(np.mean(np.abs(pred - observed) / observed)), x_max


def _interval(draws: np.ndarray, point: float) -> list[float]:
    q = 100 * (1 - CI_LEVEL) / 2
    lo, hi = np.percentile(draws, [q, 100 - q])
    return [min(float(lo), point), max(float(hi), point)]


def _verdict(law, params, ci, daic, trends) -> tuple[str, list[str]]:
    reasons = []
    for name, axis in zip(law.exponents, trends):
        if trends[axis] == "rises":
            reasons.append(f"the quantity is expected to rise with {axis}; a joint form "
                           f"describes one that falls along every axis")
        elif ci is None:
            reasons.append(f"no bootstrap interval for {name}")
        elif not ci[name][0] > 0:
            reasons.append(f"95% CI of {name} ({axis}) [{ci[name][0]:.3g}, "
                           f"{ci[name][1]:.3g}] does not exclude 0")
    if daic is None or not daic < -checks.AIC_MARGIN:
        reasons.append(f"does not beat a constant (AIC difference "
                       f"{'n/a' if daic is None else f'{daic:.1f}'}, needs < "
                       f"{-checks.AIC_MARGIN:g})")
    return (checks.HOLDS if not reasons else checks.FAILS), reasons


def fit_one(form: str, axes: tuple[str, ...], X: np.ndarray, y: np.ndarray, cfg: np.ndarray,
            base: dict, trends: dict, n_boot: int, seed, delta: float = jf.HUBER_DELTA):
    """One record (and the JointResult, or None when insufficient) for one form."""
    law = make(form, axes)
    common = dict(base, kind="joint", form=form, formula=law.formula,
                  bootstrap_unit="configuration", residuals=f"log (Huber, delta={delta:g})")
    try:
        Xc, ly = configuration_points(X, y, cfg)
        p = jf.points(Xc, ly)
        jf.check(law, p, axes)
        theta = jf.fit_point(law, p, delta)
    except jf.JointInsufficient as exc:
        return dict(common, verdict=checks.INSUFFICIENT, reasons=[str(exc)],
                    message=str(exc)), None
    boot = jf.bootstrap(law, p, theta, n_boot, seed, delta)
    params = {k: float(v) for k, v in law.to_params(theta, p.x_ref).items()}
    ci = None
    if len(boot) >= 10:
        draws = law.to_params(boot, p.x_ref)
        ci = {k: _interval(draws[k], params[k]) for k in law.param_names}
    resid = p.ly - law.log_predict(theta, p.LX)[p.cell]
    flat = p.ly - p.ly.mean()
    n = len(p.ly)
    daic = (checks.aic(float(resid @ resid), n, law.n_theta)
            - checks.aic(float(flat @ flat), n, 1))
    ext, x_max = extrapolation(law, p, X, y, delta)
    verdict, reasons = _verdict(law, params, ci, daic, trends)
    shown = ", ".join(f"{e} = {params[e]:.3g}" + (f" [{ci[e][0]:.3g}, {ci[e][1]:.3g}]"
                                                  if ci else "") for e in law.exponents)
    message = (f"{base['target']} over {', '.join(axes)} as {law.formula}: {shown}"
               if verdict == checks.HOLDS else "; ".join(reasons))
    rec = dict(common, params=params, ci=ci,
               r2=checks.r2_log(y, predict(law, params, X)), aic_vs_flat=daic,
               extrapolation_rel_error=ext, extrapolation_x=x_max, n_x=len(p.XK),
               n_configs=n, n_boot=len(boot), verdict=verdict, reasons=reasons,
               message=message)
    return rec, JointResult(law, axes, base["metric"], base["group"], p, theta, boot, rec)


def compare(records: list[dict]) -> list[dict]:
    """Per (metric, group, axes): which form extrapolates better, and by how much."""
    out = {}
    for r in records:
        if r.get("kind") != "joint" or r.get("extrapolation_rel_error") is None:
            continue
        key = (r["metric"], repr(sorted(r["group"].items())), r["x"])
        out.setdefault(key, []).append(r)
    rows = []
    for recs in out.values():
        recs = sorted(recs, key=lambda r: r["extrapolation_rel_error"])
        best = recs[0]
        row = dict(metric=best["metric"], group=best["group"], x=best["x"],
                   best=best["form"], best_error=best["extrapolation_rel_error"],
                   at=best["extrapolation_x"], others={r["form"]: r["extrapolation_rel_error"]
                                                       for r in recs[1:]})
        if len(recs) > 1:
            other = recs[1]
            ratio = (other["extrapolation_rel_error"] / best["extrapolation_rel_error"]
                     if best["extrapolation_rel_error"] > 0 else None)
            row["message"] = (f"{best['form']} extrapolates better: "
                              f"{best['extrapolation_rel_error']:.1%} vs "
                              f"{other['extrapolation_rel_error']:.1%} ({other['form']}) at "
                              f"{best['axes'][0]} = {best['extrapolation_x']:.3g}"
                              + (f", {ratio:.1f}x smaller" if ratio else "")
                              + f" ({other['extrapolation_rel_error'] - best['extrapolation_rel_error']:.1%}"
                                " points)")
        else:
            row["message"] = (f"only {best['form']} could be extrapolated: "
                              f"{best['extrapolation_rel_error']:.1%}")
        rows.append(row)
    return rows
