"""Tables of the reduced MIUB study (bench/miub_study/*.yaml) from stored results.

    python bench/miub_study/tables.py RESULTS

For each axis (rank, model size, complexity): final-evaluation mean ± sd over seeds of CE,
accuracy and every estimator, then the Spearman rho of each estimator against the axis over
all trials (the MIUB paper expects a negative rho on all three axes).
"""
from __future__ import annotations

import sys
from collections import defaultdict

import numpy as np
from scipy.stats import spearmanr

from orchestrator.store import completed_results, read_results

AXES = {"miub_rank": "rank", "miub_size": "model_params", "miub_complexity": "complexity"}
COLUMNS = [("eval_ce", "eval_ce"), ("eval_acc", "eval_acc"), ("miub", "jsd_k32 (k=32)"),
           ("miub_jsd_topk", "jsd_topk (k=0.25 d)"), ("miub_jsd_full", "jsd_full"), ("miub_club_gauss", "club_gauss")]


def main(path: str) -> None:
    rows = completed_results(read_results(path)).to_pylist()
    for experiment, axis in AXES.items():
        trials = [r for r in rows if r["experiment"] == experiment]
        if not trials:
            continue
        groups = defaultdict(list)
        for r in trials:
            groups[r[axis]].append(r)
        print(f"\n### {experiment} ({len(trials)} trials, x = {axis})\n")
        print(f"| {axis} | " + " | ".join(label for _, label in COLUMNS) + " |")
        print("|---:|" + "---:|" * len(COLUMNS))
        for x in sorted(groups):
            cells = []
            for column, _ in COLUMNS:
                values = np.array([r[column] for r in groups[x]], dtype=float)
                cells.append(f"{values.mean():.4f} ± {values.std(ddof=1):.4f}")
            print(f"| {x} | " + " | ".join(cells) + " |")
        xs = [r[axis] for r in trials]
        rhos = []
        for column, label in COLUMNS:
            rho, p = spearmanr(xs, [r[column] for r in trials])
            rhos.append(f"{label} {rho:+.2f} (p {p:.2g})")
        print("\nSpearman rho vs " + axis + ": " + "; ".join(rhos))


if __name__ == "__main__":
    main(sys.argv[1])
