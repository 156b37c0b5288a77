"""Zoo pretraining on this machine: wall time, tokens/s and losses per size.

Every run pretrains in a fresh temporary cache (nothing cached is reused) and reports each
size's tokens/s relative to the smallest size measured in the same run, so the ratios hold
across machines and load levels even when the absolute times do not.

    .venv/bin/python bench/pretrain.py [--sizes xs,s,m,l] [--archs llama,phi3] [--threads N]
                                       [--steps N]

``--steps`` shortens every recipe (LORASWEEP_PRETRAIN_STEPS) to measure throughput quickly;
the time of a full pretraining is then the recipe's steps times the measured seconds/step.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from orchestrator.table import format_table  # noqa: E402
from trainables.models import ARCHS, SIZES, ZOO, ensure_zoo_model, zoo_record  # noqa: E402

COLUMNS = ["model", "params", "non_emb", "steps", "tokens", "seconds", "tok_per_s", "rel_tok_per_s",
           "full_recipe_s", "final_loss", "heldout_ce"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default=",".join(SIZES), help=f"comma-separated sizes (default: {','.join(SIZES)})")
    parser.add_argument("--archs", default="llama", help=f"comma-separated architectures ({','.join(ARCHS)})")
    parser.add_argument("--threads", type=int, default=None, help="torch threads while pretraining (default 1, as for the zoo)")
    parser.add_argument("--steps", type=int, default=None, help="override every recipe's steps (throughput only)")
    args = parser.parse_args()
    names = [f"zoo/{a}-{s}" for a in args.archs.split(",") for s in args.sizes.split(",")]
    unknown = [n for n in names if n not in ZOO]
    if unknown:
        parser.error(f"unknown zoo models {unknown}; available: {', '.join(ZOO)}")
    names.sort(key=lambda n: (ZOO[n].arch, ZOO[n].param_counts()[1]))  # smallest of each arch first

    with tempfile.TemporaryDirectory(prefix="lorasweep-bench-") as cache:
        os.environ["LORASWEEP_CACHE"] = cache
        if args.threads:
            os.environ["LORASWEEP_PRETRAIN_THREADS"] = str(args.threads)
        if args.steps:
            os.environ["LORASWEEP_PRETRAIN_STEPS"] = str(args.steps)
        records = []
        for name in names:
            ensure_zoo_model(name)
            records.append(zoo_record(name))

    baseline = {}
    rows = []
    for r in records:
        arch = r["recipe"]["arch"]
        baseline.setdefault(arch, r["tokens_per_s"])
        full_steps = ZOO[r["name"]].pretrain_steps
        rows.append({
            "model": r["name"], "params": r["params_total"], "non_emb": r["params_non_embedding"],
            "steps": r["recipe"]["pretrain_steps"], "tokens": r["tokens"], "seconds": round(r["seconds"], 1),
            "tok_per_s": round(r["tokens_per_s"]), "rel_tok_per_s": round(r["tokens_per_s"] / baseline[arch], 3),
            "full_recipe_s": round(r["seconds"] / r["recipe"]["pretrain_steps"] * full_steps, 1),
            "final_loss": round(r["final_loss"], 3), "heldout_ce": round(r["heldout_ce"], 3),
        })
    print(format_table(rows, COLUMNS))
    print(f"threads={records[0]['threads']}; rel_tok_per_s is relative to the smallest size of the same architecture")


if __name__ == "__main__":
    main()
