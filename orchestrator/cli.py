"""The ``lorasweep`` command. Heavy imports (Ray, torch) happen inside the commands that
need them, so ``--help`` and ``validate`` answer at once.

Bad input raises :class:`~orchestrator.errors.UsageError`: its lines go to stderr and the
exit status is 2, with no traceback.
"""
from __future__ import annotations

import argparse
import sys

from orchestrator.errors import UsageError

SUMMARY_COLUMNS = ["model", "rank", "scaling", "seed", "step", "eval_ce", "eval_ppl", "eval_acc", "miub", "status"]


def _add_spec_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("spec", help="sweep spec YAML (see search_spaces/)")
    p.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
        help="override a spec field, e.g. --set train.steps=50 (repeatable)",
    )


def cmd_validate(args) -> int:
    from orchestrator.spec import load_spec

    spec = load_spec(args.spec, args.overrides)
    print(f"{args.spec}: ok ({spec.name})")
    return 0


def cmd_run(args) -> int:
    from orchestrator.spec import load_spec

    spec = load_spec(args.spec, args.overrides)
    if args.dry_run:
        from orchestrator.plan import describe_plan

        print(describe_plan(spec))
        return 0
    from orchestrator import sweep

    sweep.run(spec, address=args.address, num_cpus=args.num_cpus, resume=args.resume)
    _print_summary(spec)
    return 0


def _print_summary(spec) -> None:
    from orchestrator.store import final_rows, read_results
    from orchestrator.table import format_table
    import pyarrow.compute as pc

    from orchestrator.experiment import results_location

    where = results_location(spec)  # an absolute path or a URI, wherever the driver ran
    table = read_results(where, filter=pc.field("experiment") == spec.name)
    final = final_rows(table).sort_by([("model", "ascending"), ("scaling", "ascending"), ("rank", "ascending"), ("seed", "ascending")])
    print(f"\n{spec.name}: {final.num_rows} trials, {table.num_rows} rows in {where}/experiment={spec.name}")
    print(format_table(final.select(SUMMARY_COLUMNS).to_pylist(), SUMMARY_COLUMNS))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lorasweep", description="LoRA fine-tuning sweeps on Ray Tune with DeepSpeed, MIUB and scaling-law analysis."
    )
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("validate", help="check a sweep spec without running it")
    _add_spec_args(p)
    p.set_defaults(func=cmd_validate)

    p = sub.add_parser("run", help="run a sweep and store its results")
    _add_spec_args(p)
    p.add_argument("--address", default=None, help="Ray cluster to join: auto or ray://HOST:10001 (default: embedded Ray)")
    p.add_argument("--num-cpus", type=int, default=None, help="CPUs for an embedded Ray (default: all)")
    p.add_argument("--resume", action="store_true", help="continue an interrupted sweep of the same name")
    p.add_argument("--dry-run", action="store_true", help="print the trials or the search without starting Ray")
    p.set_defaults(func=cmd_run)

    for module in _optional_commands():
        module.add_parser(sub)
    return parser


def _optional_commands():
    """Subcommands defined next to the code they drive (query, compact, analyze, models, study)."""
    import importlib

    found = []
    for name in ("orchestrator.store.cli", "orchestrator.analysis.cli", "orchestrator.models_cli", "orchestrator.study"):
        try:
            found.append(importlib.import_module(name))
        except ModuleNotFoundError as exc:
            if not exc.name or not name.startswith(exc.name):
                raise
    return found


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except UsageError as exc:
        for line in exc.problems:
            print(f"lorasweep: error: {line}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # output piped into `head` and closed early: not an error
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except KeyboardInterrupt:
        print("lorasweep: interrupted; resume with --resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
