"""Benchmarks with known answers for the joint laws, the law search and ``recommend``.

1. recovery: rows from a known joint law (4 model sizes x 5 data sizes x 4 ranks x 3
   seeds, Gaussian seed noise with sd = 5% of the spread of the noiseless loss over the
   grid), fitted over ``--datasets`` independent draws: share of draws whose exponents
   fall within 10% of the truth, and how often the 95% intervals cover it.
2. law search: the same space as choices; the full grid (80 configurations) sets a target
   interval width (mean over exponents of the 95% bootstrap width); the LawSearcher, and
   random search as a second baseline, run configuration by configuration against the
   known law (each result the mean of 3 seeds) until their width reaches the grid's (at
   two checks in a row, from 16 configurations on); the figure is the share of the grid's
   trials each needed. One estimator scores all three.
3. recommend: a known law over model size, tokens and rank; the recommendation's true loss
   against the true optimum over the same candidate box within the budget.

Usage: .venv/bin/python bench/joint_laws.py [--datasets 100] [--search-reps 5] [--quick]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from orchestrator.analysis import axes as flops  # noqa: E402
from orchestrator.analysis import joint, joint_fit as jf  # noqa: E402
from orchestrator.analysis import recommend as rec  # noqa: E402
from orchestrator.analysis.joint_laws import make  # noqa: E402
from orchestrator.analysis.pipeline import run  # noqa: E402
from orchestrator.analysis.synthetic import sweep_rows  # noqa: E402

AXES = ("model_params", "train_size", "rank")
GRID = {"model_params": [1e6, 4e6, 16e6, 64e6], "train_size": [500, 1000, 2000, 4000, 8000],
        "rank": [1, 4, 16, 64]}
LAWS = {
    "multiplicative": ({"E": 0.5, "A": 2.0, "alpha": 0.3, "beta": 0.2, "gamma": 0.1},
                       lambda n, d, r: 2.0 * (n / 1e6) ** -0.3 * (d / 500) ** -0.2
                       * r ** -0.1 + 0.5),
    "additive": ({"E": 0.8, "alpha": 0.35, "beta": 0.3, "gamma": 0.5},
                 lambda n, d, r: 0.8 + 1.5 * (n / 1e6) ** -0.35 + 1.0 * (d / 500) ** -0.3
                 + 1.0 * r ** -0.5),
}
EXPONENTS = ("alpha", "beta", "gamma")
SEEDS = 3
# A bootstrap over fewer configurations than this (~3x the law's 5 parameters) gives
# widths too erratic to compare: random search "reached" the grid's width with 8 of them.
MIN_CHECKED = 16


def noisy_rows(fn, rng: np.random.Generator, sd_share=0.05) -> pa.Table:
    """Grid rows with Gaussian seed noise of sd = sd_share x (max - min) of the true loss."""
    table = sweep_rows(GRID, {"eval_ce": lambda c: fn(c["model_params"], c["train_size"],
                                                      c["rank"].astype(float))},
                       seeds=range(SEEDS), noise=0.0)
    clean = table["eval_ce"].to_numpy()
    sd = sd_share * float(np.ptp(clean))
    noisy = np.maximum(clean + sd * rng.standard_normal(len(clean)), 1e-3)
    return table.set_column(table.column_names.index("eval_ce"), "eval_ce", pa.array(noisy))


def recovery(n_datasets: int, n_boot: int) -> None:
    print(f"## 1. recovery over {n_datasets} datasets ({n_boot} resamples each)")
    for form, (truth, fn) in LAWS.items():
        rng = np.random.default_rng(1)
        within, cover, rel, est = [], [], [], []
        t0 = time.perf_counter()
        for _ in range(n_datasets):
            t = noisy_rows(fn, rng)
            X = np.column_stack([t[a].to_numpy().astype(float) for a in AXES])
            base = dict(metric="eval_ce", target="eval_ce", group={})
            r, _ = joint.fit_one(form, AXES, X, t["eval_ce"].to_numpy(),
                                 t["config_hash"].to_numpy(zero_copy_only=False), base,
                                 {a: "falls" for a in AXES}, n_boot, 0)
            err = [abs(r["params"][e] - truth[e]) / truth[e] for e in EXPONENTS]
            rel.append(err)
            est.append([r["params"][e] for e in EXPONENTS])
            within.append([x <= 0.10 for x in err])
            cover.append([r["ci"][e][0] <= truth[e] <= r["ci"][e][1] for e in EXPONENTS])
        rel, within, cover, est = map(np.array, (rel, within, cover, est))
        spent = time.perf_counter() - t0
        print(f"{form} (true {', '.join(f'{e}={truth[e]}' for e in EXPONENTS)}; "
              f"{spent / n_datasets:.2f} s per dataset):")
        for j, e in enumerate(EXPONENTS):
            print(f"  {e}: mean estimate {est[:, j].mean():.3f} (sd {est[:, j].std():.3f}, "
                  f"bias {est[:, j].mean() / truth[e] - 1:+.1%}), "
                  f"median |error| {np.median(rel[:, j]):.1%}, within 10%: "
                  f"{within[:, j].mean():.0%}, 95% CI covers truth: {cover[:, j].mean():.0%}")
        print(f"  all three within 10%: {within.all(1).mean():.0%} of datasets; "
              f"goal (within 10%, coverage >= 90%): "
              f"{'met' if within.all(1).mean() >= 0.9 and cover.mean(0).min() >= 0.9 else 'NOT met'}"
              f" (coverage goal alone: {'met' if cover.mean(0).min() >= 0.9 else 'NOT met'})")


# -- 2. law search -----------------------------------------------------------------------

def width_of(X: np.ndarray, y: np.ndarray, n_boot: int) -> float:
    """Mean 95% bootstrap width of the exponents of the multiplicative law on these points."""
    law = make("multiplicative", AXES)
    p = jf.points(X, np.log(y))
    try:
        jf.check(law, p, AXES)
        theta = jf.fit_point(law, p)
    except jf.JointInsufficient:
        return np.inf
    boot = jf.bootstrap(law, p, theta, n_boot, 123)
    lo, hi = np.percentile(boot[:, -3:], [2.5, 97.5], axis=0)
    return float(np.mean(hi - lo))


def search_run(kind: str, fn, sd: float, rng, n_max: int, target: float, n_boot: int,
               every: int):
    """Configurations needed to reach ``target`` width (None if not within n_max)."""
    from ray import tune

    from orchestrator.search.law_searcher import LawSearcher
    from orchestrator.search.random_searcher import RandomSearcher

    space = {"model": {"params": tune.choice(GRID["model_params"])},
             "data": {"train_size": tune.choice(GRID["train_size"])},
             "lora": {"rank": tune.choice(GRID["rank"])}}
    searcher = (LawSearcher(["model.params", "data.train_size", "lora.rank"],
                            metric="eval_ce", seed=int(rng.integers(1 << 30)))
                if kind == "law" else RandomSearcher())
    searcher.set_search_properties("eval_ce", "min", space)
    X, y, below = [], [], 0
    for i in range(n_max):
        cfg = searcher.suggest(f"t{i}")
        x = [cfg["model"]["params"], cfg["data"]["train_size"], cfg["lora"]["rank"]]
        value = fn(*map(float, x)) + sd / np.sqrt(SEEDS) * rng.standard_normal()
        searcher.on_trial_complete(f"t{i}", {"eval_ce": value})
        X.append(x)
        y.append(value)
        if (i + 1) % every or i + 1 < MIN_CHECKED:
            continue
        below = below + 1 if width_of(np.array(X), np.array(y), n_boot) <= target else 0
        if below == 2:   # two checks in a row: one lucky bootstrap does not count
            return i + 1 - every
    return None


def law_search(reps: int, n_boot: int, every: int) -> None:
    print(f"## 2. law search vs grid and random ({reps} repetitions, multiplicative law)")
    _, fn = LAWS["multiplicative"]
    grid = np.array(np.meshgrid(*GRID.values(), indexing="ij")).reshape(3, -1).T.astype(float)
    n_grid = len(grid)
    sd = 0.05 * float(np.ptp(fn(*grid.T)))
    need = {"law": [], "random": []}
    for rep in range(reps):
        rng = np.random.default_rng(100 + rep)
        y = fn(*grid.T) + sd / np.sqrt(SEEDS) * rng.standard_normal(n_grid)
        target = width_of(grid, y, n_boot)
        for kind in ("law", "random"):   # alternated within each repetition
            t0 = time.perf_counter()
            n = search_run(kind, fn, sd, np.random.default_rng(200 + rep), 2 * n_grid,
                           target, n_boot, every)
            need[kind].append(n)
            print(f"  rep {rep}: grid width {target:.4f} with {n_grid} configurations; "
                  f"{kind} reached it with {n if n else '>' + str(2 * n_grid)} "
                  f"({time.perf_counter() - t0:.1f} s)")
    for kind, ns in need.items():
        shares = [(n if n else 2 * n_grid) / n_grid for n in ns]
        print(f"{kind}: median share of the grid's trials {np.median(shares):.0%} "
              f"(each: {', '.join(f'{s:.0%}' for s in shares)})")
    med = np.median([(n if n else 2 * n_grid) / n_grid for n in need["law"]])
    print(f"goal (law search <= 60% of the grid's trials): {'met' if med <= 0.6 else 'NOT met'}")


# -- 3. recommend --------------------------------------------------------------------------

REC_GRID = {"model_params": [1e6, 4e6, 16e6, 64e6], "tokens_seen": [1e6, 4e6, 16e6, 64e6],
            "rank": [1, 4, 16, 64]}


def rec_truth(n, t, r):
    return 1.5 * (n / 1e6) ** -0.3 + 1.2 * (t / 1e6) ** -0.25 + 0.3 * r ** -0.5 + 0.8


def true_optimum(budget: float, n_max: float, t_max: float) -> float:
    n = np.geomspace(1e6, n_max, 600)[:, None, None]
    t = np.geomspace(1e6, t_max, 600)[None, :, None]
    r = 2.0 ** np.arange(7)[None, None, :]
    cost = flops.train_flops(n, r * 2 * 64 * np.sqrt(n / 1e6), t)
    return float(np.where(cost <= budget, rec_truth(n, t, r), np.inf).min())


def recommend_bench(draws: int, n_boot: int) -> None:
    print(f"## 3. recommend ({draws} noise draws per budget)")
    for budget in (1e15, 1e16, 1e17):
        gaps = []
        for d in range(draws):
            rng = np.random.default_rng(300 + d)
            table = sweep_rows(REC_GRID, {"eval_ce": lambda c: rec_truth(
                c["model_params"], c["tokens_seen"], c["rank"].astype(float))}, noise=0.0)
            clean = table["eval_ce"].to_numpy()
            noisy = clean + 0.05 * np.ptp(clean) * rng.standard_normal(len(clean))
            table = table.set_column(table.column_names.index("eval_ce"), "eval_ce",
                                     pa.array(np.maximum(noisy, 1e-3)))
            axes = ("model_params", "tokens_seen", "rank")
            analysis = run(table, x=axes, y="eval_ce", forms=(), joint=axes, n_boot=n_boot)
            from orchestrator.analysis import select

            points = select.reduce_steps(table, "final")
            result = rec.recommend(analysis, rec.trial_columns(points), budget)
            c = result.best.config
            got = rec_truth(c["model_params"], c["tokens_seen"], c["rank"])
            stretch = max(1.0, budget / result.observed[1])
            best = true_optimum(budget, 64e6 * stretch, 64e6 * stretch)
            gaps.append(got / best - 1)
        print(f"budget {budget:.0e} FLOPs: true loss of the recommendation vs true optimum: "
              f"median +{np.median(gaps):.2%}, worst +{max(gaps):.2%}, within 2% in "
              f"{np.mean(np.array(gaps) <= 0.02):.0%} of draws -> goal (within 2%, every "
              f"draw): {'met' if max(gaps) <= 0.02 else 'NOT met'}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", type=int, default=100)
    parser.add_argument("--bootstrap", type=int, default=400)
    parser.add_argument("--search-reps", type=int, default=5)
    parser.add_argument("--rec-draws", type=int, default=10)
    parser.add_argument("--only", choices=("recovery", "search", "recommend"))
    parser.add_argument("--quick", action="store_true", help="a few draws of each")
    args = parser.parse_args()
    if args.quick:
        args.datasets, args.search_reps, args.rec_draws = 10, 1, 2
    if args.only in (None, "recovery"):
        recovery(args.datasets, args.bootstrap)
    if args.only in (None, "search"):
        law_search(args.search_reps, 200, every=2)
    if args.only in (None, "recommend"):
        recommend_bench(args.rec_draws, 200)
    return 0


if __name__ == "__main__":
    sys.exit(main())
