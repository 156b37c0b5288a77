"""rsLoRA vs standard LoRA: does the scaling rule change how final CE moves with rank?

Standard LoRA scales the adapter by alpha/r, so at a fixed alpha a larger rank learns with
a smaller effective step; rsLoRA scales by alpha/sqrt(r) to keep larger ranks useful. The
check fits, per scaling rule, the least-squares slope of the metric against log2(rank)
(change per doubling of rank), bootstraps it over seeds, and calls the rules different when
the 95% interval of ``slope(rslora) - slope(standard)`` excludes 0.
"""
from __future__ import annotations

import numpy as np
import pyarrow as pa

from . import resample, select
from .laws import LAWS
from .solve import fit_many
from .fit import CI_LEVEL

RULES = ("standard", "rslora")
DIFFER, SAME, INSUFFICIENT = "differ", "no difference", "insufficient"


def _interval(samples: np.ndarray) -> list[float]:
    """Percentile interval of the finite samples (a resample on one rank has no slope)."""
    q = 100 * (1 - CI_LEVEL) / 2
    samples = samples[np.isfinite(samples)]
    return [float(np.percentile(samples, q)), float(np.percentile(samples, 100 - q))]


def _slope(rank, y, configs, n_boot, seed):
    """Point slope, rescaled bootstrap slopes and a summary dict for one scaling rule."""
    ok = np.isfinite(rank) & np.isfinite(y) & (rank > 0)
    rank, y, configs = rank[ok], y[ok], configs[ok]
    lk, k_idx = np.unique(np.log2(rank), return_inverse=True)
    info = {"slope": None, "ci": None, "n_points": int(ok.sum()), "n_ranks": int(len(lk)),
            "bootstrap_unit": None}
    if len(lk) < 2:
        return None, None, info
    line = LAWS["power"]  # fitted here in linear space: y = i - b * log2(rank), slope = -b
    slope = float(-fit_many(line, lk, k_idx, y, np.ones((1, len(y))))[0, 1])
    res = resample.draw(configs, rank, n_boot, seed)
    boot = -fit_many(line, lk, k_idx, y, res.counts)[:, 1]
    boot = np.where(res.n_x >= 2, slope + res.rescale * (boot - slope), np.nan)
    info.update(slope=slope, ci=_interval(boot), bootstrap_unit=res.unit)
    return slope, boot, info


def _one(cols, idx, metric, group, n_boot, seed, step) -> dict:
    rec = {"metric": metric, "x": "log2(rank)", "group": group, "step": step,
           "standard": None, "rslora": None, "difference": None, "differ": None,
           "verdict": INSUFFICIENT, "message": ""}
    slopes, boots = {}, {}
    for i, rule in enumerate(RULES):
        m = idx[cols["scaling"][idx] == rule]
        slopes[rule], boots[rule], rec[rule] = _slope(cols["rank"][m], cols[metric][m],
                                                      cols["config"][m], n_boot, [seed, i])
    short = [r for r in RULES if slopes[r] is None]
    if short:
        rec["message"] = (f"{' and '.join(short)} rows cover fewer than 2 distinct ranks with "
                          f"a finite {metric}")
        return rec
    diff = boots["rslora"] - boots["standard"]
    ci = _interval(diff)
    rec["difference"] = {"value": slopes["rslora"] - slopes["standard"], "ci": ci}
    rec["differ"] = bool(ci[0] > 0 or ci[1] < 0)
    rec["verdict"] = DIFFER if rec["differ"] else SAME
    s, r = rec["standard"], rec["rslora"]
    rec["message"] = (f"{metric} per doubling of rank: standard {s['slope']:+.4g} "
                      f"[{s['ci'][0]:+.4g}, {s['ci'][1]:+.4g}], rslora {r['slope']:+.4g} "
                      f"[{r['ci'][0]:+.4g}, {r['ci'][1]:+.4g}]; difference "
                      f"{rec['difference']['value']:+.4g} [{ci[0]:+.4g}, {ci[1]:+.4g}] "
                      + ("excludes 0: the rules differ" if rec["differ"]
                         else "includes 0: no difference shown"))
    return rec


def check_points(points: pa.Table, metric: str = "eval_ce", by=(), n_boot: int = 1000,
                 seed: int = 0, step: str = "final") -> list[dict]:
    """The rsLoRA check on already-reduced points (one row per trial), per ``by`` group."""
    by = tuple(c for c in by if c != "scaling")
    missing = [c for c in ("rank", "scaling", metric) if c not in points.column_names]
    if missing or points.num_rows == 0:
        why = (f"results have no {', '.join(map(repr, missing))} column" if missing
               else "no rows selected")
        return [{"metric": metric, "x": "log2(rank)", "group": {}, "step": step,
                 "standard": None, "rslora": None, "difference": None, "differ": None,
                 "verdict": INSUFFICIENT, "message": why}]
    cols = {c: select.column(points, c) for c in ("rank", "scaling", metric, "config")}
    return [_one(cols, idx, metric, group, n_boot, seed, step)
            for group, idx in select.groups(points, by)]


def rslora_check(data, metric: str = "eval_ce", step: str = "final",
                 experiment: str | None = None, by=(), n_boot: int = 1000,
                 seed: int = 0) -> list[dict]:
    """Compare the slope of final ``metric`` vs log2(rank) under standard LoRA and rsLoRA.

    ``data`` is a pyarrow Table or Dataset of result rows. Returns one record per ``by``
    group (see docs/analysis.md for the shape); bad column names raise UsageError.
    """
    by = tuple(by) if not isinstance(by, str) else tuple(b for b in by.split(",") if b)
    table = select.load(data, x=("rank",), y=(metric,), by=by, experiment=experiment)
    points = select.reduce_steps(table, step)
    return check_points(points, metric=metric, by=by, n_boot=n_boot, seed=seed, step=step)
