"""Write an analysis to a directory (report.md, fits.json, rslora.json, PNGs) and summarise it.

``fits.json`` and ``rslora.json`` are strict JSON (no NaN): a value that does not apply or
could not be computed is ``null``. The record shapes are described in docs/analysis.md.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from . import checks, depth
from .pipeline import Analysis
from .plots import plot_panel


def _clean(v):
    """JSON-safe copy: numpy scalars to Python, NaN/inf to None."""
    if isinstance(v, dict):
        return {str(k): _clean(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_clean(x) for x in v]
    if isinstance(v, (np.integer,)):
        return int(v)
    if isinstance(v, (float, np.floating)):
        return float(v) if math.isfinite(v) else None
    if isinstance(v, np.bool_):
        return bool(v)
    return v


def _f(v, fmt=".3g") -> str:
    return "n/a" if v is None else format(v, fmt)


def _group(g: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in g.items()) or "all"


def _ci(rec: dict, key: str) -> str:
    """``value [lo, hi]`` of one parameter; just the value without a bootstrap interval."""
    if not rec.get("params"):
        return "n/a"
    if not rec.get("ci"):
        return _f(rec["params"][key])
    lo, hi = rec["ci"][key]
    return f"{rec['params'][key]:.3g} [{lo:.3g}, {hi:.3g}]"


def _p(p: float | None) -> str:
    """A p-value; one that underflowed to 0 is shown as < 1e-300, not as exactly 0."""
    return "n/a" if p is None else "<1e-300" if p == 0 else format(p, ".2g")


def _rho(rec: dict) -> str:
    if rec.get("spearman_rho") is None:
        return "n/a"
    return f"{rec['spearman_rho']:+.2f} ({_p(rec['spearman_p'])})"


def _panel_name(metric: str, x: str) -> str:
    return f"{metric}_vs_{x}.png"


def _axis_records(analysis: Analysis) -> list[dict]:
    return [r for r in analysis.records if r.get("kind", "axis") == "axis"]


def _joint_records(analysis: Analysis) -> list[dict]:
    return [r for r in analysis.records if r.get("kind") == "joint"]


def _exponents(rec: dict) -> str:
    """Every exponent of a joint record with its interval."""
    if not rec.get("params"):
        return "n/a"
    names = [k for k in ("alpha", "beta", "gamma") if k in rec["params"]]
    return "; ".join(f"{k} {_ci(rec, k)}" for k in names)


def _joint_lines(analysis: Analysis) -> list[str]:
    rows = [("metric", "axes", "group", "form", "exponents [95% CI]", "R2log", "extrap.",
             "verdict")]
    for r in _joint_records(analysis):
        rows.append((r["metric"], r["x"], _group(r["group"]), r["form"], _exponents(r),
                     _f(r["r2"], ".3f"), _f(r["extrapolation_rel_error"], ".1%"),
                     r["verdict"]))
    if len(rows) == 1:
        return []
    widths = [max(len(str(row[i])) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(row, widths)).rstrip() for row in rows]
    return lines + [f"joint ({c['metric']}, {_group(c['group'])}): {c['message']}"
                    for c in analysis.joint_comparison]


def summary_table(analysis: Analysis) -> str:
    """The compact table the CLI prints: one line per fit record, then the joint fits and
    the rsLoRA lines."""
    head = ("metric", "x", "group", "form", "b [95% CI]", "R2log", "dAIC", "rho (p)",
            "verdict")
    rows = [head]
    for r in _axis_records(analysis):
        rows.append((r["metric"], r["x"], _group(r["group"]), r["form"],
                     _ci(r, "b"), _f(r["r2"], ".3f"),
                     _f(r["aic_vs_flat"], ".1f"), _rho(r), r["verdict"]))
    widths = [max(len(str(row[i])) for row in rows) for i in range(len(head))]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(row, widths)).rstrip() for row in rows]
    joint = _joint_lines(analysis)
    if joint:
        lines += [""] + joint
    for r in analysis.rslora:
        lines.append(f"rsLoRA vs standard ({_group(r['group'])}): {r['verdict']}: "
                     f"{r['message']}")
    return "\n".join(lines)


def _markdown(analysis: Analysis, panels: list[str], depth_lines: list[str] = ()) -> str:
    m = analysis.meta
    statuses = ", ".join(f"{k}: {v}" for k, v in sorted(m["statuses"].items())) or "none"
    out = ["# Scaling-law report", "",
           f"- Selection: experiment `{m['experiment'] or 'all'}`, step `{m['step']}`, "
           f"x: {', '.join(m['x'])}, metrics: {', '.join(m['y'])}, "
           f"groups by: {', '.join(m['by']) or 'none'}",
           f"- Law forms: {', '.join(m['forms'])}; bootstrap: {m['n_boot']} resamples "
           f"(seed {m['seed']})",
           f"- Rows read: {m['rows']} ({statuses}; trials whose last row is an error are left out); "
           f"trials analysed: {m['trials']}; configurations: {m['configs']}",
           _stopped_line(m), "",
           "## Verdicts", ""]
    for r in analysis.records:
        out.append(f"- **{r['verdict']}** ({r['form']}, {_group(r['group'])}): "
                   f"{r['message']}")
    out += ["", "## Fits", "",
            "| metric | fitted | x | group | form | a | b [95% CI] | c | R² (log) | "
            "ΔAIC vs flat | Spearman ρ (p) | extrap. rel. error | n | verdict |",
            "|" + "---|" * 14]
    for r in _axis_records(analysis):
        out.append(f"| {r['metric']} | {r['target']} | {r['x']} | {_group(r['group'])} | "
                   f"{r['form']} | {_ci(r, 'a')} | {_ci(r, 'b')} | {_ci(r, 'c')} | "
                   f"{_f(r['r2'], '.3f')} | {_f(r['aic_vs_flat'], '.1f')} | {_rho(r)} | "
                   f"{_f(r['extrapolation_rel_error'], '.1%')} | {r['n_points']} | "
                   f"{r['verdict']} |")
    out += _joint_markdown(analysis)
    out += ["", "## Stability and agreement with accuracy", "",
            "| metric | group | mean CV across seeds | Kendall τ vs eval_acc (p) |",
            "|---|---|---|---|"]
    seen = set()
    for r in _axis_records(analysis):
        key = (r["metric"], _group(r["group"]))
        if key in seen:
            continue
        seen.add(key)
        tau = (f"{r['kendall_tau_vs_acc']:+.2f} ({_p(r['kendall_p_vs_acc'])})"
               if r["kendall_tau_vs_acc"] is not None else "n/a")
        out.append(f"| {key[0]} | {key[1]} | {_f(r['stability_cv'], '.2%')} | {tau} |")
    out += ["", "## rsLoRA vs standard LoRA", ""]
    if analysis.rslora:
        out += ["| group | standard slope [95% CI] | rslora slope [95% CI] | "
                "difference [95% CI] | verdict |", "|---|---|---|---|---|"]
        for r in analysis.rslora:
            cells = []
            for part in ("standard", "rslora", "difference"):
                d = r[part]
                val = d["slope"] if part != "difference" and d else (d or {}).get("value")
                cells.append("n/a" if not d or d.get("ci") is None or val is None else
                             f"{val:+.4g} [{d['ci'][0]:+.4g}, {d['ci'][1]:+.4g}]")
            out.append(f"| {_group(r['group'])} | {' | '.join(cells)} | {r['verdict']} |")
        out += [""] + [f"- {_group(r['group'])}: {r['message']}" for r in analysis.rslora]
    else:
        out.append("Not run: no rows selected.")
    out += ["", *depth_lines] if depth_lines else []
    out += ["", "## Plots", ""] + [f"![{p[:-4]}]({p})" for p in panels]
    out += ["", "## How verdicts are decided", "",
            f"A law **holds** when (1) Spearman ρ has the expected sign with "
            f"p < {checks.ALPHA}, (2) AIC(law) − AIC(flat) < −{checks.AIC_MARGIN:g}, and "
            "(3) the 95% bootstrap interval of the exponent b excludes 0 on the expected "
            "side. It **fails** when any of these does not hold, and is **insufficient** "
            "when the data cannot support a fit (fewer than 3 distinct x values, no finite "
            "values, or non-positive values for a log-space form).", ""]
    return "\n".join(out)


def _stopped_line(m: dict) -> str:
    n = m.get("stopped_left_out", 0)
    if m.get("include_stopped"):
        return "- Early-stopped trials (status `stopped`) are included (--include-stopped)"
    if m["step"] != "final":
        return "- Early-stopped trials are kept: `--step best` compares each trial's best step"
    return (f"- Early-stopped trials (status `stopped`) left out of these final-point fits: "
            f"{n}" + (" (include them with --include-stopped)" if n else ""))


def _joint_markdown(analysis: Analysis) -> list[str]:
    """The joint-law section: parameters with intervals, extrapolation, the comparison."""
    recs = _joint_records(analysis)
    if not recs:
        return []
    m = analysis.meta
    out = ["", "## Joint laws", "",
           f"Axes: {', '.join(m['joint_axes'])}; forms: {', '.join(m['joint_forms'])}; fitted "
           f"to each configuration's mean of log y over its seeds with a Huber loss "
           f"(delta = {m['huber_delta']:g}) on log residuals; intervals from "
           f"{m['n_boot']} resamples of configurations (seed clusters). Extrapolation: "
           f"fit without the largest {m['joint_axes'][0]}, predict it.", ""]
    if analysis.joint_comparison:
        out += ["**Which law extrapolates better**", ""]
        out += [f"- {c['metric']} ({_group(c['group'])}): {c['message']}"
                for c in analysis.joint_comparison]
        out.append("")
    out += ["| metric | group | form | parameters [95% CI] | R² (log) | ΔAIC vs constant | "
            "extrap. rel. error | configurations | verdict |", "|" + "---|" * 9]
    for r in recs:
        params = ("; ".join(f"{k} {_ci(r, k)}" for k in r["params"]) if r["params"]
                  else r["message"])
        out.append(f"| {r['metric']} | {_group(r['group'])} | {r['form']} | {params} | "
                   f"{_f(r['r2'], '.3f')} | {_f(r['aic_vs_flat'], '.1f')} | "
                   f"{_f(r['extrapolation_rel_error'], '.1%')} | {r['n_configs'] or 0} | "
                   f"{r['verdict']} |")
    return out


def write(analysis: Analysis, report_dir) -> Path:
    """Write every artefact into ``report_dir`` (created if needed); returns its path."""
    root = Path(report_dir)
    root.mkdir(parents=True, exist_ok=True)
    panels = []
    targets = {(r["metric"], r["x"]): r["target"] for r in analysis.records}
    for (metric, x), series in analysis.series.items():
        name = _panel_name(metric, x)
        plot_panel(root / name, metric, targets.get((metric, x), metric), x, series)
        panels.append(name)
    (root / "fits.json").write_text(json.dumps(_clean(analysis.records), indent=1,
                                               allow_nan=False))
    (root / "rslora.json").write_text(json.dumps(_clean(analysis.rslora), indent=1,
                                                 allow_nan=False))
    depth_lines = depth.write(analysis.depth_rows, root, by=tuple(analysis.meta.get("by") or ()))
    (root / "report.md").write_text(_markdown(analysis, panels, depth_lines))
    return root
