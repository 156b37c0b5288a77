"""``lorasweep analyze RESULTS``: fit and check scaling laws, print a summary, write a report.

Exit status: 0 when done, 1 with ``--check`` when any law's verdict is ``fails``; bad input
(unknown column, missing results directory, no usable rows) raises UsageError, which the
main CLI prints line by line before exiting with status 2. Only argparse and the column
names load at import time: building ``lorasweep --help`` must stay fast.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from orchestrator.errors import UsageError

from .names import AXES, DEFAULT_FORMS, JOINT_FORMS, METRICS, STEPS


def _split(value: str) -> tuple[str, ...]:
    return tuple(v.strip() for v in (value or "").split(",") if v.strip())


def _open(path: str):
    """The result store's reader, or plain hive-partitioned Parquet where it is absent."""
    import pyarrow as pa
    import pyarrow.dataset as pads

    uri = "://" in path  # s3://, gs://, hdfs://, file://: opened through pyarrow.fs by the store
    root = path if uri else Path(path)
    if not uri and not root.is_dir():
        raise UsageError(f"RESULTS: {path!r} is not a directory")
    try:
        from orchestrator.store import open_results
    except ModuleNotFoundError as exc:
        if exc.name != "orchestrator.store":
            raise
        open_results = None
    try:
        if open_results is not None:
            return open_results(root)
        return pads.dataset(root, format="parquet", partitioning="hive")
    except (pa.ArrowInvalid, OSError) as exc:
        raise UsageError(f"RESULTS: cannot read {path!r} as Parquet: {exc}") from exc


def _no_rows(data, path: str, experiment: str | None, rows: int) -> UsageError:
    if rows:
        return UsageError(f"RESULTS: all {rows} selected rows in {path!r} have status 'error'")
    lines = [f"RESULTS: no rows in {path!r}" + (f" for experiment {experiment!r}"
                                                 if experiment else "")]
    if experiment and "experiment" in data.schema.names:
        present = sorted(set(map(str, data.to_table(columns=["experiment"])["experiment"]
                                 .to_pylist())))
        lines.append(f"experiments present: {', '.join(present) or 'none'}")
    return UsageError(lines)


def handler(args: argparse.Namespace) -> int:
    from . import select
    from .pipeline import run
    from .report import summary_table, write

    xs, ys, by = _split(args.x), _split(args.y), _split(args.by)
    problems = [f"--x: {v!r} is not an analysis axis ({', '.join(AXES)})"
                for v in xs if v not in AXES]
    data = _open(args.results)
    if getattr(data, "files", None) == []:
        raise UsageError(f"RESULTS: no Parquet files under {args.results!r}")
    try:
        select.validate(data.schema, [v for v in xs if v in AXES], ys, by)
    except UsageError as exc:
        problems += exc.problems
    if args.report:
        problems += _report_dir_problems(args.report)
    if problems:
        raise UsageError(problems)
    table = select.load(data, xs, ys, by, args.experiment)
    if select.drop_errors(table).num_rows == 0:
        raise _no_rows(data, args.results, args.experiment, table.num_rows)
    analysis = run(table, x=xs, y=ys, by=by, step=args.step, experiment=args.experiment,
                   forms=_split(args.law), n_boot=args.bootstrap, seed=args.seed,
                   joint_forms=_split(args.joint_law), include_stopped=args.include_stopped)
    print(summary_table(analysis))
    if args.report:
        root = write(analysis, args.report)
        print(f"report written to {root / 'report.md'}")
    failed = [r for r in analysis.records if r["verdict"] == "fails"]
    if args.check and failed:
        print(f"check failed: {len(failed)} law fit(s) with verdict 'fails'")
        return 1
    return 0


def _report_dir_problems(path: str) -> list[str]:
    """Create the report directory up front, so a bad one fails before minutes of fitting."""
    import os
    from pathlib import Path

    try:
        Path(path).mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        return [f"--report: cannot create directory {path!r}: {exc.strerror or exc}"]
    if not os.access(path, os.W_OK):
        return [f"--report: directory {path!r} is not writable"]
    return []


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Add the ``analyze`` subcommand to an argparse subparsers object."""
    p = subparsers.add_parser(
        "analyze", help="fit and check scaling laws over a results directory",
        description="Fit scaling laws (metric vs x) over a Parquet results directory, "
                    "check them and print a summary; --report writes report.md, fits.json, "
                    "rslora.json and PNG plots.")
    p.add_argument("results", metavar="RESULTS", help="results directory (hive-partitioned)")
    p.add_argument("--experiment", metavar="NAME", help="analyse only this experiment")
    p.add_argument("--x", default="rank",
                   help=f"x axis, or several comma-separated: {'|'.join(AXES)} "
                        "(default: rank)")
    p.add_argument("--y", default=",".join(METRICS),
                   help="metric columns, comma-separated (default: %(default)s)")
    p.add_argument("--by", default="", help="group by these columns, e.g. scaling,model")
    p.add_argument("--step", choices=STEPS, default="final",
                   help="final: each trial's last step; best: its lowest-eval_ce step")
    p.add_argument("--law", default=",".join(DEFAULT_FORMS),
                   help="law forms to fit, comma-separated (default: %(default)s)")
    p.add_argument("--joint-law", default=",".join(JOINT_FORMS),
                   help="with 2 or 3 axes in --x, also fit these joint forms over them "
                        "(first axis extrapolated); 'none' skips (default: %(default)s)")
    p.add_argument("--include-stopped", action="store_true",
                   help="keep early-stopped trials (status 'stopped') in final-step fits")
    p.add_argument("--report", metavar="DIR", help="write the report files into DIR")
    p.add_argument("--check", action="store_true",
                   help="exit with status 1 when any law's verdict is 'fails'")
    p.add_argument("--bootstrap", type=int, default=1000, metavar="N",
                   help="bootstrap resamples for the intervals (default: 1000)")
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed (default: 0)")
    p.set_defaults(func=handler)
    return p
