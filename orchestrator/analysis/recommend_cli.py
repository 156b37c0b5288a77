"""``lorasweep recommend RESULTS --experiment E --budget FLOPS``: the configuration a fitted
joint law predicts best within a compute budget (see :mod:`.recommend`).

The budget is ``--budget`` FLOPs, or ``--gpu-hours H --tokens-per-second T``: H x 3600 x T
training tokens (a token budget: the throughput is taken as given, whatever the model
size, so prefer FLOPs when model sizes differ much). Bad input and budgets far outside the
observed range raise UsageError (exit status 2). Only argparse loads at import time.
"""
from __future__ import annotations

import argparse
import json

from orchestrator.errors import UsageError

DEFAULT_AXES = "model_params,auto,rank"


def _axes(value: str, table) -> tuple[str, ...]:
    """``auto`` is tokens_seen when it varies across trials, else train_size; an axis with
    one value (e.g. a single rank) is dropped."""
    import numpy as np

    from . import select

    out = []
    for name in (v.strip() for v in value.split(",") if v.strip()):
        if name == "auto":
            name = "tokens_seen" if "tokens_seen" in table.column_names and len(
                np.unique(select.column(table, "tokens_seen"))) > 1 else "train_size"
        if name in table.column_names and len(np.unique(select.column(table, name))) > 1:
            out.append(name)
    return tuple(out)


def handler(args: argparse.Namespace) -> int:
    from . import recommend as rec
    from . import select
    from .cli import _open
    from .pipeline import run

    if (args.budget is None) == (args.gpu_hours is None):
        raise UsageError("give either --budget FLOPS or --gpu-hours H with "
                         "--tokens-per-second T")
    if args.gpu_hours is not None and args.tokens_per_second is None:
        raise UsageError("--gpu-hours needs --tokens-per-second (training tokens per second)")
    problems = [f"{flag}: {v!r} must be positive" for flag, v in
                (("--budget", args.budget), ("--gpu-hours", args.gpu_hours),
                 ("--tokens-per-second", args.tokens_per_second)) if v is not None and v <= 0]
    if problems:
        raise UsageError(problems)
    data = _open(args.results)
    needed = ["model_params", "trainable_params", "tokens_seen"]
    missing = [c for c in needed if c not in data.schema.names]
    if missing:
        raise UsageError(f"RESULTS: recommend needs the columns {', '.join(needed)}; "
                         f"missing: {', '.join(missing)}")
    table = select.load(data, needed + [c for c in ("rank", "train_size")
                                        if c in data.schema.names], (args.y,), (),
                        args.experiment)
    points = select.reduce_steps(select.drop_errors(table), "final")
    points, _ = select.drop_stopped(points)
    if points.num_rows == 0:
        raise UsageError(f"RESULTS: no completed trials in {args.results!r}"
                         + (f" for experiment {args.experiment!r}" if args.experiment else ""))
    axes = _axes(args.x, points)
    if len(axes) < 2:
        raise UsageError(f"--x: fewer than 2 of {args.x!r} vary across the trials; a joint "
                         f"law needs 2 or 3 axes that vary")
    by = ("scaling",) if "scaling" in points.column_names and len(
        set(points["scaling"].to_pylist())) > 1 else ()
    analysis = run(points, x=axes, y=(args.y,), by=by, forms=(), joint=axes,
                   n_boot=args.bootstrap, seed=args.seed)
    budget, kind = ((args.budget, "flops") if args.budget is not None else
                    (args.gpu_hours * 3600 * args.tokens_per_second, "tokens"))
    result = rec.recommend(analysis, rec.trial_columns(points), budget, kind)
    print(describe(result, args.y))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(as_dict(result), fh, indent=1)
    return 0


def _group(g: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in g.items()) or "all trials"


def describe(result, metric: str) -> str:
    unit = "FLOPs" if result.budget_kind == "flops" else "tokens"
    lines = [f"budget: {result.budget:.3g} {unit} (trials observed: "
             f"{result.observed[0]:.3g} to {result.observed[1]:.3g} {unit})"]
    for c in sorted(result.choices, key=lambda c: c.loss):
        mark = "best" if c is result.best else "    "
        cfg = ", ".join(f"{a}={v:.4g} [{c.config_ci[a][0]:.3g}, {c.config_ci[a][1]:.3g}]"
                        for a, v in c.config.items())
        ext = ("n/a" if c.extrapolation_rel_error is None
               else f"{c.extrapolation_rel_error:.1%}")
        lines.append(f"{mark} {_group(c.group)} ({c.form} law, extrapolation error {ext}): "
                     f"{cfg}; {c.flops:.3g} FLOPs; predicted {metric} {c.loss:.4g} "
                     f"[{c.loss_ci[0]:.4g}, {c.loss_ci[1]:.4g}]")
    lines += [f"note: {n}" for n in result.notes]
    return "\n".join(lines)


def as_dict(result) -> dict:
    def one(c):
        return {"group": c.group, "form": c.form, "config": c.config, "config_ci": c.config_ci,
                "flops": c.flops, "loss": c.loss, "loss_ci": c.loss_ci,
                "extrapolation_rel_error": c.extrapolation_rel_error}
    return {"budget": result.budget, "budget_kind": result.budget_kind,
            "observed": list(result.observed), "best": one(result.best),
            "choices": [one(c) for c in result.choices], "notes": result.notes}


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Add the ``recommend`` subcommand to an argparse subparsers object."""
    p = subparsers.add_parser(
        "recommend", help="the configuration a fitted joint law predicts best within a budget",
        description="Fit the joint scaling laws over model size, data and rank, take the one "
                    "that extrapolates best (per scaling rule) and print the configuration "
                    "with the lowest predicted loss within the budget, with bootstrap "
                    "intervals. Budgets more than 10x beyond the observed FLOPs are refused.")
    p.add_argument("results", metavar="RESULTS", help="results directory (hive-partitioned)")
    p.add_argument("--experiment", metavar="NAME", help="use only this experiment")
    p.add_argument("--budget", type=float, metavar="FLOPS", help="training FLOPs available")
    p.add_argument("--gpu-hours", type=float, metavar="H", help="GPU hours available")
    p.add_argument("--tokens-per-second", type=float, metavar="T",
                   help="training tokens per second per GPU (with --gpu-hours)")
    p.add_argument("--y", default="eval_ce", help="the loss to minimise (default: eval_ce)")
    p.add_argument("--x", default=DEFAULT_AXES,
                   help="law axes; auto = tokens_seen when it varies, else train_size; axes "
                        "with one value are dropped (default: %(default)s)")
    p.add_argument("--bootstrap", type=int, default=500, metavar="N",
                   help="bootstrap resamples for the intervals (default: 500)")
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed (default: 0)")
    p.add_argument("--json", metavar="FILE", help="also write the recommendation as JSON")
    p.set_defaults(func=handler)
    return p
