"""``lorasweep models``: list the built-in zoo, or pretrain zoo models ahead of a sweep.

Pretraining ahead means a sweep's trials only load from the cache instead of the first one
pretraining while the others wait on its lock. Listing computes parameter counts in closed
form from the recipes, so it needs neither torch nor a model and answers at once.
"""
from __future__ import annotations

import argparse

from orchestrator.errors import UsageError

LIST_COLUMNS = ["model", "arch", "layers", "hidden", "params", "non_embedding", "pretrain_steps", "cached",
                "pretrain_s", "final_loss"]


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("models", help="list the built-in zoo models or pretrain them ahead of a sweep")
    sub = p.add_subparsers(dest="models_command", required=True)

    q = sub.add_parser("list", help="every zoo model: architecture, parameter counts, whether it is cached")
    q.set_defaults(func=cmd_list)

    q = sub.add_parser("pretrain", help="pretrain zoo models into the cache now (skips cached ones)")
    q.add_argument("names", nargs="*", metavar="NAME", help="zoo model names, e.g. zoo/llama-s (see `models list`)")
    q.add_argument("--all", action="store_true", help="every zoo model")
    q.set_defaults(func=cmd_pretrain)


def cmd_list(args: argparse.Namespace) -> int:
    from orchestrator.table import format_table
    from trainables.models import ZOO, cache_root, zoo_record, zoo_recipe

    rows = []
    for name in ZOO:
        recipe = zoo_recipe(name)
        total, non_embedding = recipe.param_counts()
        record = zoo_record(name)
        rows.append({
            "model": name, "arch": recipe.arch, "layers": recipe.layers, "hidden": recipe.hidden,
            "params": total, "non_embedding": non_embedding, "pretrain_steps": recipe.pretrain_steps,
            "cached": "yes" if record else "no",
            "pretrain_s": round(record["seconds"], 1) if record else None,
            "final_loss": round(record["final_loss"], 3) if record else None,
        })
    print(format_table(rows, LIST_COLUMNS))
    print(f"cache: {cache_root() / 'zoo'}")
    return 0


def cmd_pretrain(args: argparse.Namespace) -> int:
    from trainables.models import ZOO, ensure_zoo_model, zoo_record

    names = list(ZOO) if args.all else list(dict.fromkeys(args.names))
    if not names:
        raise UsageError(f"name at least one zoo model, or --all; available: {', '.join(ZOO)}")
    unknown = [n for n in names if n not in ZOO]
    if unknown:
        raise UsageError([f"unknown zoo model {n!r}" for n in unknown] + [f"available: {', '.join(ZOO)}"])
    for name in names:
        path = ensure_zoo_model(name)
        record = zoo_record(name)
        print(f"{name}: {path} (pretrained in {record['seconds']:.1f}s, final loss {record['final_loss']:.3f})")
    return 0
