"""Benchmark: a full scaling-law analysis of 100k result rows, against reading them.

Writes a synthetic sweep (1512 trials x 66 evaluation steps plus 208 rows of failed
trials = 100,000 rows) as a hive-partitioned Parquet store, then times, in the same run:

- baseline: open the store, read the needed columns, drop error rows, reduce to one row
  per trial (the floor any analysis pays);
- full: 4 metrics x 4 axes x 2 law forms with 1000 bootstrap resamples each, the joint
  additive and multiplicative laws over (model_params, train_size, rank) for every metric
  (1000 resamples each, plus the leave-largest-out refit), the checks, the rsLoRA check,
  report.md, fits.json and 16 PNG plots.

Usage: .venv/bin/python bench/analysis.py [--bootstrap N] [--keep DIR]
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from orchestrator.analysis import METRICS, run  # noqa: E402
from orchestrator.analysis import select  # noqa: E402
from orchestrator.analysis.report import write  # noqa: E402
from orchestrator.analysis.synthetic import demo_rows  # noqa: E402

N_ROWS = 100_000
BENCH_AXES = ("rank", "model_params", "train_size", "complexity")
JOINT_AXES = ("model_params", "train_size", "rank")
GOAL_S = 10.0


def make_store(root: Path) -> pa.Table:
    """Write the synthetic sweep plus failed-trial rows to root/experiment=demo/."""
    table = demo_rows(n_steps=66)
    failed = table.slice(0, N_ROWS - table.num_rows).to_pylist()
    for row in failed:
        row.update(trial_id=row["trial_id"] + "-failed", status="error",
                   miub=None, eval_ce=None, eval_ppl=None, eval_acc=None)
    table = pa.concat_tables([table, pa.Table.from_pylist(failed, schema=table.schema)])
    part = root / "experiment=demo"
    part.mkdir(parents=True)
    pq.write_table(table.drop_columns(["experiment"]), part / "part-0.parquet")
    return table


def read_and_reduce(root: Path) -> int:
    data = pads.dataset(root, format="parquet", partitioning="hive")
    table = select.load(data, BENCH_AXES, METRICS, (), "demo")
    return select.reduce_steps(select.drop_errors(table), "final").num_rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bootstrap", type=int, default=1000)
    parser.add_argument("--keep", metavar="DIR", help="write the report here and keep it")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "results"
        table = make_store(root)
        read_and_reduce(root)  # warm the file cache and imports for both timings
        base = []
        for _ in range(3):
            t0 = time.perf_counter()
            trials = read_and_reduce(root)
            base.append(time.perf_counter() - t0)
        baseline = min(base)

        report_dir = Path(args.keep) if args.keep else Path(tmp) / "report"
        c0 = time.process_time()
        t0 = time.perf_counter()
        data = pads.dataset(root, format="parquet", partitioning="hive")
        analysis = run(data, x=BENCH_AXES, y=METRICS, experiment="demo",
                       n_boot=args.bootstrap, joint=JOINT_AXES)
        t1 = time.perf_counter()
        write(analysis, report_dir)
        t2 = time.perf_counter()
        cpu = time.process_time() - c0
        t3 = time.perf_counter()
        run(pads.dataset(root, format="parquet", partitioning="hive"), x=BENCH_AXES,
            y=METRICS, experiment="demo", n_boot=args.bootstrap, joint=())
        no_joint = time.perf_counter() - t3
    full = t2 - t0
    verdicts = {}
    for r in analysis.records:
        verdicts[r["verdict"]] = verdicts.get(r["verdict"], 0) + 1
    print(f"rows: {table.num_rows:,} ({trials:,} trials; {N_ROWS - 66 * trials:,} error rows)")
    n_joint = sum(r["kind"] == "joint" for r in analysis.records)
    print(f"analysis: {len(METRICS)} metrics x {len(BENCH_AXES)} axes x "
          f"{len(analysis.meta['forms'])} forms = {len(analysis.records) - n_joint} fits + "
          f"{n_joint} joint fits over {', '.join(JOINT_AXES)}, {args.bootstrap} bootstrap "
          f"resamples each, + rsLoRA check")
    print(f"verdicts: {verdicts}")
    print(f"read + reduce (baseline, best of 3): {baseline:8.3f} s")
    print(f"full analysis wall time:             {full:8.3f} s "
          f"(fits and checks {t1 - t0:.3f} s, report and plots {t2 - t1:.3f} s)")
    print(f"fits and checks without the joint fits: {no_joint:6.3f} s (joint fits ~"
          f"{max(t1 - t0 - no_joint, 0):.3f} s of the full run)")
    print(f"full analysis CPU time (all threads): {cpu:8.3f} s "
          f"(wall well above CPU means other work shares the cores)")
    print(f"ratio full / baseline:               {full / baseline:8.1f} x")
    print(f"goal < {GOAL_S:g} s on 2 cores:               "
          f"{'met' if full < GOAL_S else 'NOT met'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
