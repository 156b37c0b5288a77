"""One analysis from rows to records: select, fit every (x, group, metric, form), check.

The loop lives here so that each step (selection, fitting, checking, reporting) stays in
its own module. Resamples are drawn once per (x, group, metric) from a generator seeded with
``seed`` alone, so a record does not change when other metrics or axes are added.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from orchestrator.errors import UsageError

from . import axes as derived
from . import checks, resample, rslora, select
from . import joint as joint_fits
from .fit import Fit, bootstrap, fit_flat_ls, fit_point, prepare
from .joint_fit import HUBER_DELTA
from .joint_laws import make as make_joint
from .laws import LAWS, Insufficient, get_law, predict
from .names import DEFAULT_FORMS, JOINT_FORMS, METRICS

MIN_BOOT = 50
# Every fits.json record has exactly these keys (None where a value does not apply).
RECORD_KEYS = ("kind", "axes", "metric", "target", "x", "group", "form", "formula", "step", "expected_trend",
               "params", "ci", "residuals", "r2", "aic_vs_flat", "spearman_rho",
               "spearman_p", "extrapolation_rel_error", "extrapolation_x", "stability_cv",
               "kendall_tau_vs_acc", "kendall_p_vs_acc", "n_points", "n_x", "n_configs",
               "n_dropped", "bootstrap_unit", "n_boot", "verdict", "reasons", "message")


@dataclass
class Series:
    """One group's points on one (metric, x) panel, with the fits drawn over them."""

    group: dict
    x: np.ndarray
    y: np.ndarray
    fits: dict[str, Fit] = field(default_factory=dict)


@dataclass
class Analysis:
    records: list[dict]
    rslora: list[dict]
    series: dict[tuple[str, str], list[Series]]
    meta: dict
    joint: list = field(default_factory=list)          # joint.JointResult per fitted law
    joint_comparison: list[dict] = field(default_factory=list)
    depth_rows: list[dict] = field(default_factory=list)  # per-module MIUB of the selected rows


def _names(value) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        return tuple(v.strip() for v in value.split(",") if v.strip())
    return tuple(value)


def _num(v):
    """A float for JSON: None for NaN, inf or missing."""
    if v is None:
        return None
    v = float(v)
    return v if np.isfinite(v) else None


def _record(**fields) -> dict:
    rec = dict.fromkeys(RECORD_KEYS)
    rec.update(kind="axis", axes=[fields["x"]] if fields.get("x") else None)
    rec.update(fields)
    for key, value in rec.items():
        if isinstance(value, float) or isinstance(value, np.floating):
            rec[key] = _num(value)
    return rec


def _describe(rec: dict) -> str:
    b, ci = rec["params"]["b"], rec["ci"]["b"] if rec["ci"] else None
    shown = f"b = {b:.3g}" + (f" [{ci[0]:.3g}, {ci[1]:.3g}]" if ci else "")
    return f"{rec['target']} {rec['expected_trend']} with {rec['x']} as {rec['formula']}, {shown}"


def _fit_form(law, x, y, res, trend, common) -> tuple[dict, Fit | None]:
    try:
        ax = prepare(law, x, y)
        fit = bootstrap(fit_point(law, ax), ax, res)
    except Insufficient as exc:
        return _record(**common, verdict=checks.INSUFFICIENT, reasons=[str(exc)],
                       message=str(exc)), None
    daic = checks.aic_vs_flat(fit, fit_flat_ls(ax, LAWS["flat"]))
    ext, x_max = checks.extrapolation(law, x, y)
    b_ci = fit.ci["b"] if fit.ci else None
    verdict, reasons = checks.verdict(trend, common["spearman_rho"], common["spearman_p"],
                                      daic, fit.params["b"], b_ci)
    rec = _record(**common, params=fit.params, ci=fit.ci, residuals=ax.residuals,
                  r2=_num(checks.r2_log(y, predict(fit.params, x))), aic_vs_flat=_num(daic),
                  extrapolation_rel_error=_num(ext), extrapolation_x=x_max,
                  n_boot=fit.n_boot_ok, verdict=verdict, reasons=reasons)
    for key in ("spearman_rho", "spearman_p"):
        rec[key] = _num(rec[key])
    rec["message"] = _describe(rec) if verdict == checks.HOLDS else "; ".join(reasons)
    if checks.log_linear_limit(fit.params, y):
        rec["message"] += ("; b is near 0 with a large a: the data follow y = c' - k log x "
                           "and b itself is poorly identified")
    if common["n_dropped"]:
        rec["message"] += (f" ({common['n_dropped']} trial(s) without a finite value or a "
                           f"positive x left out)")
    return rec, fit


def _draw(cache: dict, cfg, x, n_boot, seed) -> resample.Resamples:
    """Resamples for these points, shared by every metric and axis with the same design."""
    key = (cfg.tobytes(), x.tobytes())
    if key not in cache:
        cache[key] = resample.draw(cfg, x, n_boot, seed)
    return cache[key]


def _analyse(cols, idx, xc, metric, group, laws, n_boot, seed, step, expect, cache):
    idx = idx[np.argsort(cols[xc][idx], kind="stable")]  # grouped by x: see solve.irls
    label, y_all = checks.target(metric, cols[metric][idx])
    x_all, cfg_all = cols[xc][idx], cols["config"][idx]
    trend = checks.expected_trend(metric, xc, expect)
    cv, _ = checks.stability(cols[metric][idx], cfg_all)
    acc = cols["eval_acc"][idx] if "eval_acc" in cols else None
    tau, tau_p = checks.agreement(cols[metric][idx], acc, cfg_all)
    ok = np.isfinite(x_all) & np.isfinite(y_all) & (x_all > 0)
    x, y, cfg = x_all[ok], y_all[ok], cfg_all[ok]
    series = Series(group, x, y)
    base = dict(metric=metric, target=label, x=xc, group=group, step=step,
                expected_trend=trend, stability_cv=_num(cv), kendall_tau_vs_acc=_num(tau),
                kendall_p_vs_acc=_num(tau_p), n_points=int(ok.sum()),
                n_x=int(len(np.unique(x))), n_configs=int(len(np.unique(cfg))),
                n_dropped=int((~ok).sum()))
    if base["n_points"] == 0:
        why = (f"no trial has a finite {metric} and a positive {xc} "
               f"({base['n_dropped']} trial(s) selected)")
    elif base["n_x"] < 3:
        shown = ", ".join(f"{v:g}" for v in np.unique(x))
        why = (f"only {base['n_x']} distinct {xc} value(s) with a finite {metric} ({shown}); "
               f"a law needs at least 3")
        if base["n_dropped"]:
            why += f"; {base['n_dropped']} trial(s) had a missing or non-finite value"
    if base["n_x"] < 3:
        return [_record(**base, form=law.name, formula=law.formula,
                        verdict=checks.INSUFFICIENT, reasons=[why], message=why)
                for law in laws], series
    rho, p = checks.spearman(x, y)
    res = _draw(cache, cfg, x, n_boot, seed)
    records = []
    for law in laws:
        common = dict(base, form=law.name, formula=law.formula, spearman_rho=rho,
                      spearman_p=p, bootstrap_unit=res.unit)
        rec, fit = _fit_form(law, x, y, res, trend, common)
        records.append(rec)
        if fit is not None:
            series.fits[law.name] = fit
    return records, series


def _empty(xs, ys, laws, step, why) -> list[dict]:
    return [_record(metric=m, target=checks.target(m, np.zeros(0))[0], x=xc, group={},
                    form=law.name, formula=law.formula, step=step, n_points=0,
                    verdict=checks.INSUFFICIENT, reasons=[why], message=why)
            for xc in xs for m in ys for law in laws]


def _joint_axes(xs, joint) -> tuple[str, ...]:
    """The joint fit's axes: ``joint`` when given, else --x itself when it names 2 or 3."""
    if joint is not None:
        return _names(joint)
    return xs if 2 <= len(xs) <= 3 else ()


def _analyse_joint(cols, groups, jaxes, ys, jforms, n_boot, seed, step, expect, delta):
    records, results = [], []
    for group, idx in groups:
        X_all = np.column_stack([cols[a][idx] for a in jaxes])
        for metric in ys:
            label, y_all = checks.target(metric, cols[metric][idx])
            ok = np.isfinite(y_all) & (y_all > 0) & np.all(np.isfinite(X_all) & (X_all > 0), 1)
            trends = {a: checks.expected_trend(metric, a, expect) for a in jaxes}
            base = dict(metric=metric, target=label, x=",".join(jaxes), axes=list(jaxes),
                        group=group, step=step, expected_trend="falls",
                        n_points=int(ok.sum()), n_dropped=int((~ok).sum()))
            for form in jforms:
                rec, res = joint_fits.fit_one(form, jaxes, X_all[ok], y_all[ok],
                                         cols["config"][idx][ok], base, trends, n_boot,
                                         seed, delta)
                records.append(_record(**rec))
                if res is not None:
                    res.record = records[-1]
                    results.append(res)
    return records, results


def run(data, x="rank", y=METRICS, by=(), step="final", experiment=None,
        forms=DEFAULT_FORMS, n_boot=1000, seed=0, expect=None, joint=None,
        joint_forms=JOINT_FORMS, include_stopped=False,
        huber_delta=HUBER_DELTA) -> Analysis:
    """Select, fit and check; see :func:`orchestrator.analysis.analyze` for the arguments."""
    xs, ys, by, forms = _names(x), _names(y), _names(by), _names(forms)
    if not xs or not ys:
        raise UsageError("--x and --y each need at least one column")
    jaxes, jforms = _joint_axes(xs, joint), _names(joint_forms)
    if "none" in jforms:
        jaxes, jforms = (), ()
    if jaxes:
        for form in jforms:
            make_joint(form, jaxes)  # unknown forms and axis counts raise UsageError
    all_axes = tuple(dict.fromkeys(xs + jaxes))
    if n_boot < MIN_BOOT:
        raise UsageError(f"--bootstrap: needs at least {MIN_BOOT} resamples, got {n_boot}")
    for metric, trend in (expect or {}).items():
        if trend not in ("falls", "rises"):
            raise UsageError(f"expect[{metric!r}]: {trend!r} is not 'falls' or 'rises'")
    laws = [get_law(f) for f in forms]
    nulls = [law.name for law in laws if law.exponent is None]
    if nulls:
        raise UsageError(f"--law: {', '.join(nulls)} is the null model every law is compared "
                         f"with, not a law to check")
    table = select.load(data, all_axes, ys, by, experiment)
    statuses = select.status_counts(table)
    points = select.reduce_steps(table, step)
    n_stopped = 0
    if step == "final" and not include_stopped:
        points, n_stopped = select.drop_stopped(points)
    points = derived.add_derived(points, all_axes)
    meta = dict(experiment=experiment, x=list(xs), y=list(ys), by=list(by), step=step,
                forms=list(forms), n_boot=n_boot, seed=seed, rows=table.num_rows,
                statuses=statuses, trials=points.num_rows, stopped_left_out=n_stopped,
                include_stopped=include_stopped, joint_axes=list(jaxes),
                joint_forms=list(jforms) if jaxes else [], huber_delta=huber_delta,
                configs=int(len(np.unique(select.column(points, "config"))))
                if points.num_rows else 0)
    series: dict[tuple[str, str], list[Series]] = {}
    if points.num_rows == 0:
        why = ("no rows selected" + (f" for experiment {experiment!r}" if experiment else "")
               + " (trials that ended in error are left out)")
        return Analysis(_empty(xs, ys, laws, step, why), [], series, meta)
    needed = set(all_axes) | set(ys) | {"config"} | ({"eval_acc"} & set(points.column_names))
    cols = {c: select.column(points, c) for c in needed}
    records, cache = [], {}
    groups = select.groups(points, by)
    for xc in xs:
        for group, idx in groups:
            for metric in ys:
                recs, s = _analyse(cols, idx, xc, metric, group, laws, n_boot, seed, step,
                                   expect, cache)
                records += recs
                series.setdefault((metric, xc), []).append(s)
    jrecords, jresults = ([], []) if not jaxes else _analyse_joint(
        cols, groups, jaxes, ys, jforms, n_boot, seed, step, expect, huber_delta)
    checks_rs = rslora.check_points(points, by=by, n_boot=n_boot, seed=seed, step=step)
    depth_cols = [c for c in ("miub_layers", *by) if c in points.column_names]
    depth_rows = points.select(depth_cols).to_pylist() if "miub_layers" in depth_cols else []
    return Analysis(records + jrecords, checks_rs, series, meta, jresults,
                    joint_fits.compare(jrecords), depth_rows)
