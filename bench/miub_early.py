"""Early prediction: which metric, read early in training, best orders configurations by
their final accuracy and final CE?

For each metric (CE, PPL, every stored MIUB estimator) at ~25% and ~50% of training, the
configurations (``config_hash``) are ordered by the metric's mean over seeds, and Kendall's
tau is taken against the order of the final ``eval_acc`` (and final ``eval_ce``) means. The
95% interval resamples seeds with replacement inside each configuration. Works on stored
results only (no training):

    python bench/miub_early.py RESULTS [--experiment NAME ...] [--boot 1000] [--json out.json]

A metric that falls as accuracy rises has tau near -1 against eval_acc and near +1 against
eval_ce; |tau| is how well it orders, its sign which way.
"""
from __future__ import annotations

import argparse
import json
import math
from collections import defaultdict

import numpy as np
from scipy.stats import kendalltau

from orchestrator.store import read_results

METRICS = ["eval_ce", "eval_ppl", "miub", "miub_jsd_topk", "miub_jsd_full", "miub_club_gauss"]
TARGETS = ["eval_acc", "eval_ce"]


def _trials(rows: list[dict]) -> dict[str, dict]:
    """trial_id -> {config, seed, steps: {step: row}} for completed rows with a step."""
    trials: dict[str, dict] = {}
    for row in rows:
        if row["step"] is None:
            continue
        key = f"{row['experiment']}/{row['trial_id']}"
        trial = trials.setdefault(key, {"config": row["config_hash"], "seed": row["seed"], "steps": {}})
        trial["steps"][row["step"]] = row
    return trials


def _at(trial: dict, fraction: float) -> dict:
    """The evaluation nearest to ``fraction`` of the trial's last step."""
    last = max(trial["steps"])
    return trial["steps"][min(trial["steps"], key=lambda s: abs(s - fraction * last))]


def _table(trials: dict, fraction: float, metric: str, target: str) -> dict[str, list[tuple[float, float]]]:
    """config -> [(metric early, target final) per seed]."""
    per_config = defaultdict(list)
    for trial in trials.values():
        early, final = _at(trial, fraction).get(metric), trial["steps"][max(trial["steps"])].get(target)
        if early is not None and final is not None and math.isfinite(early) and math.isfinite(final):
            per_config[trial["config"]].append((early, final))
    return per_config


def _tau(per_config: dict[str, list[tuple[float, float]]]) -> float:
    means = np.array([np.mean(pairs, axis=0) for pairs in per_config.values()])
    if len(means) < 3 or np.ptp(means[:, 0]) == 0 or np.ptp(means[:, 1]) == 0:
        return math.nan
    return float(kendalltau(means[:, 0], means[:, 1]).statistic)


def tau_with_interval(per_config, boot: int, seed: int = 0) -> tuple[float, float, float]:
    rng = np.random.default_rng(seed)
    point = _tau(per_config)
    draws = []
    for _ in range(boot):
        resampled = {c: [pairs[i] for i in rng.integers(0, len(pairs), len(pairs))] for c, pairs in per_config.items()}
        draws.append(_tau(resampled))
    draws = np.array([d for d in draws if math.isfinite(d)])
    if not len(draws):
        return point, math.nan, math.nan
    low, high = np.percentile(draws, [2.5, 97.5])
    return point, float(low), float(high)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", help="result store path")
    parser.add_argument("--experiment", action="append", help="experiments to pool (default: all)")
    parser.add_argument("--fractions", type=float, nargs="+", default=[0.25, 0.5])
    parser.add_argument("--boot", type=int, default=1000, help="bootstrap resamples over seeds")
    parser.add_argument("--json", help="also write the figures here")
    args = parser.parse_args()
    rows = read_results(args.results).to_pylist()
    if args.experiment:
        rows = [r for r in rows if r["experiment"] in args.experiment]
    trials = _trials(rows)
    configs = {t["config"] for t in trials.values()}
    print(f"{len(trials)} trials, {len(configs)} configurations, experiments: "
          f"{', '.join(sorted({r['experiment'] for r in rows}))}")
    out = []
    print("| at | metric | tau vs final eval_acc [95%] | tau vs final eval_ce [95%] |")
    print("|---|---|---|---|")
    for fraction in args.fractions:
        for metric in METRICS:
            cells = []
            for target in TARGETS:
                per_config = _table(trials, fraction, metric, target)
                if len(per_config) < 3:
                    cells.append("n/a")
                    continue
                point, low, high = tau_with_interval(per_config, args.boot)
                out.append({"fraction": fraction, "metric": metric, "target": target, "tau": point,
                            "ci": [low, high], "configs": len(per_config)})
                cells.append(f"{point:+.2f} [{low:+.2f}, {high:+.2f}]")
            print(f"| {fraction:.0%} | {metric} | {cells[0]} | {cells[1]} |")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(out, handle, indent=1)


if __name__ == "__main__":
    main()
