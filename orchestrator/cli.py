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
    """Exit 0 when every trial completed (or was stopped by the scheduler), 1 when some
    errored or diverged, 2 on bad input, 130 when interrupted (see orchestrator.outcome)."""
    from orchestrator.spec import load_spec

    spec = load_spec(args.spec, args.overrides)
    if args.dry_run:
        from orchestrator.plan import describe_plan

        print(describe_plan(spec))
        return 0
    from orchestrator import outcome, sweep
    from orchestrator.experiment import experiment_dir, lock_directory
    from orchestrator.run_lock import ExperimentLock, embedded_ray_pids, stop_leftover_ray

    sweep.check_single_writer(spec, resume=args.resume, append=args.append)
    with ExperimentLock(lock_directory(spec), spec.name) as lock:
        for pid in stop_leftover_ray(lock.stale):
            print(f"lorasweep: stopped process {pid} of the embedded Ray a killed run of {spec.name!r} left behind",
                  file=sys.stderr)
        try:
            sweep.run(spec, address=args.address, num_cpus=args.num_cpus, resume=args.resume,
                      run_id=None if args.resume else sweep.new_run_id(),
                      on_connected=lambda: lock.record_ray_processes(embedded_ray_pids()))
        except KeyboardInterrupt:
            print(f"lorasweep: interrupted; continue with: {outcome.resume_command(args)}", file=sys.stderr)
            return outcome.EXIT_INTERRUPTED
        result = outcome.read_outcome(spec)
    _print_summary(spec)
    status = result.exit_status()
    if status == outcome.EXIT_INTERRUPTED:
        print(f"lorasweep: interrupted; continue with: {outcome.resume_command(args)}", file=sys.stderr)
    elif status == outcome.EXIT_FAILED:
        print(f"lorasweep: {result.failure_line(experiment_dir(spec))}", file=sys.stderr)
    return status


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


def add_spec_commands(sub) -> None:
    """``validate`` and ``run``: the commands that read a sweep spec."""
    p = sub.add_parser("validate", help="check a sweep spec without running it")
    _add_spec_args(p)
    p.set_defaults(func=cmd_validate)

    p = sub.add_parser("run", help="run a sweep and store its results")
    _add_spec_args(p)
    p.add_argument("--address", default=None, help="Ray cluster to join: auto or ray://HOST:10001 (default: embedded Ray)")
    p.add_argument("--num-cpus", type=int, default=None, help="CPUs for an embedded Ray (default: all)")
    p.add_argument("--resume", action="store_true", help="continue an interrupted sweep of the same name")
    p.add_argument("--append", action="store_true",
                   help="run again into an experiment that has rows: a new run_id, kept apart from seeds by the analysis")
    p.add_argument("--dry-run", action="store_true", help="print the trials or the search without starting Ray")
    p.set_defaults(func=cmd_run)


# Every subcommand, in --help order: the names an entry adds and the "module:function" that
# adds them (each module imports only argparse-level code at import time, so --help is fast).
COMMANDS = (
    (("validate", "run"), "orchestrator.cli:add_spec_commands"),
    (("query", "compact"), "orchestrator.store.cli:add_parser"),
    (("analyze",), "orchestrator.analysis.cli:add_parser"),
    (("recommend",), "orchestrator.analysis.recommend_cli:add_parser"),
    (("models",), "orchestrator.models_cli:add_parser"),
    (("doctor",), "orchestrator.doctor:add_parser"),
)


def build_parser() -> argparse.ArgumentParser:
    import importlib

    parser = argparse.ArgumentParser(
        prog="lorasweep", description="LoRA fine-tuning sweeps on Ray Tune with DeepSpeed, MIUB and scaling-law analysis."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    for _, target in COMMANDS:
        module, function = target.split(":")
        getattr(importlib.import_module(module), function)(sub)
    return parser


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
        print("lorasweep: interrupted; continue with --resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
