"""``lorasweep query`` and ``lorasweep compact``: the result store from the command line.

Both raise :class:`~orchestrator.errors.UsageError` for bad input (unknown column, malformed
``--where``, unreadable file), which the main CLI prints as one line each, exiting with 2.
Only pyarrow is imported, so both answer without starting Ray or torch.
"""
from __future__ import annotations

import sys

TABLE_COLUMNS = ["experiment", "trial_id", "attempt", "status", "model", "rank", "alpha", "scaling", "seed",
                 "step", "eval_ce", "eval_acc", "miub"]


def cmd_query(args) -> int:
    from orchestrator.store.output import check_target, write_result
    from orchestrator.store.query import query

    columns = [c.strip() for c in args.columns.split(",") if c.strip()] if args.columns else None
    if columns is None and args.format == "table":
        columns = TABLE_COLUMNS
    check_target(args.format, args.output)
    result = query(args.results, where=args.where, columns=columns, latest=args.latest, skip_bad=args.skip_bad)
    for bad in result.skipped:
        print(f"lorasweep: skipped {bad}", file=sys.stderr)
    write_result(result.table, args.format, args.output)
    if args.output:
        print(f"{result.table.num_rows} rows written to {args.output}", file=sys.stderr)
    return 0


def cmd_compact(args) -> int:
    from orchestrator.store.compact import compact

    reports = compact(args.results, args.experiment)
    for report in reports:
        print(report)
    if not reports:
        print(f"{args.results}: no experiments to compact")
    return 0


def add_parser(subparsers) -> None:
    """Add ``query`` and ``compact`` to the ``lorasweep`` subcommands."""
    p = subparsers.add_parser(
        "query", help="filter and print stored results",
        description="Rows of a result store, one per (experiment, trial, step), latest attempt only. "
                    "Example: --where \"rank >= 8 and scaling == 'rslora'\" --latest",
    )
    p.add_argument("results", metavar="RESULTS", help="result store directory (results.path of the spec)")
    p.add_argument("--where", metavar="EXPR",
                   help="filter: comparisons (== != < <= > >=), in (...), is [not] null, and, or, not, "
                        "parentheses, numbers, 'strings', column names")
    p.add_argument("--columns", metavar="A,B", help="columns to output (default: all; a short set for --format table)")
    p.add_argument("--latest", action="store_true",
                   help="only each trial's latest row (its highest step of its latest attempt); --where then filters those")
    p.add_argument("--format", choices=["table", "csv", "json", "parquet"], default="table",
                   help="output format (default: table; parquet needs --output)")
    p.add_argument("--output", metavar="FILE", help="write to FILE (whole, via a temporary file) instead of stdout")
    p.add_argument("--skip-bad", action="store_true",
                   help="skip unreadable files (named on stderr) instead of stopping")
    p.set_defaults(func=cmd_query)

    p = subparsers.add_parser(
        "compact", help="merge an experiment's small result files into a few sorted ones",
        description="Rewrite each experiment's files as a few large files sorted by (trial_id, step), one row "
                    "per step (latest attempt). Safe while a sweep is writing and while others read.",
    )
    p.add_argument("results", metavar="RESULTS", help="result store directory")
    p.add_argument("--experiment", metavar="NAME", help="compact only this experiment (default: all)")
    p.set_defaults(func=cmd_compact)
