"""Replay early-stopping schedulers over the stored curves of a finished sweep.

The curves of ``bench/data/early_stopping_curves.parquet`` (every trial run to the end, see
``bench/data/early_stopping_sweep.yaml``) are fed, offline, to the real scheduler objects
lorasweep builds (``orchestrator.search.builders.build_scheduler``: Tune's FIFO, ASHA,
HyperBand and median stopping rule, and the curve scheduler) through the API Tune's
controller uses: ``on_trial_add``, ``choose_trial_to_run``, ``on_trial_result`` (CONTINUE,
PAUSE or STOP), ``on_trial_complete``, and ``stop_trial``/``get_live_trials`` called back on
the controller. Trials are light objects with Tune's statuses; ``concurrency`` of them are
live at once (Tune's ``max_concurrent_trials`` counts paused trials too) and run side by side
on a simulated clock in optimizer steps, so asynchronous decisions see the same partial
information they would in a sweep. Results are averaged over random orders of the
configurations (the seeds of one configuration come one after another, as the seed
replicator hands them out).

Per scheduler it prints the fraction of FIFO's training steps spent, how often the best
configuration (lowest seed-mean final eval_ce over the full curves) survived (at least one
seed ran to the end) and was chosen, and the regret: the true seed-mean final eval_ce of the
configuration a user would pick from what ran to the end, minus the best one, in units of
the pooled seed standard deviation of the final eval_ce.

    python bench/early_stopping.py                         # replay, print the table
    python bench/early_stopping.py --export /tmp/es        # store's rows -> the Parquet file
"""
from __future__ import annotations

import argparse
import itertools
import random
import statistics
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from orchestrator.search.builders import build_scheduler  # noqa: E402
from orchestrator.spec import load_spec  # noqa: E402

DATA = ROOT / "bench" / "data" / "early_stopping_curves.parquet"
SWEEP = ROOT / "bench" / "data" / "early_stopping_sweep.yaml"
EXPERIMENT = "early-stopping-curves"
KEEP = ["trial_id", "config_hash", "rank", "scaling", "seed", "step", "eval_ce", "status"]
PENDING, RUNNING, PAUSED, TERMINATED = "PENDING", "RUNNING", "PAUSED", "TERMINATED"
CONTINUE, PAUSE, STOP = "CONTINUE", "PAUSE", "STOP"


@dataclass(eq=False)
class ReplayTrial:
    """What Tune's schedulers read of a trial: id, config, status, last result."""

    trial_id: str
    config: dict
    curve: list[tuple[int, float]]
    status: str = PENDING
    is_saving: bool = False
    last_result: dict | None = None
    reported: int = 0  # evaluations reported so far
    resumed_at: float = 0.0  # simulated clock when it last started running
    step_at_resume: int = 0

    @property
    def step(self) -> int:
        return self.curve[self.reported - 1][0] if self.reported else 0

    def next_event(self) -> float:
        return self.resumed_at + self.curve[self.reported][0] - self.step_at_resume


@dataclass
class Controller:
    """The part of Tune's TuneController that schedulers call back."""

    scheduler: object
    trials: list[ReplayTrial] = field(default_factory=list)

    def get_trials(self):
        return list(self.trials)

    def get_live_trials(self):
        return [t for t in self.trials if t.status != TERMINATED]

    def stop_trial(self, trial: ReplayTrial) -> None:
        """As TuneController.stop_trial: a paused or pending trial is removed, a running one completed."""
        if trial.status == TERMINATED:
            return
        if trial.status in (PENDING, PAUSED):
            self.scheduler.on_trial_remove(self, trial)
        else:
            self.scheduler.on_trial_complete(self, trial, trial.last_result)
        trial.status = TERMINATED


def replay(scheduler, trials: list[ReplayTrial], concurrency: int, max_t: int) -> int:
    """Run ``trials`` (in order) under ``scheduler``; returns the optimizer steps trained."""
    ctl = Controller(scheduler)
    queue, now, spent = list(trials), 0.0, 0
    while True:
        while queue and len(ctl.get_live_trials()) < concurrency:
            trial = queue.pop(0)
            ctl.trials.append(trial)
            scheduler.on_trial_add(ctl, trial)
        while sum(t.status == RUNNING for t in ctl.trials) < concurrency:
            chosen = scheduler.choose_trial_to_run(ctl)
            if chosen is None:
                break
            chosen.status, chosen.resumed_at, chosen.step_at_resume = RUNNING, now, chosen.step
        running = [t for t in ctl.trials if t.status == RUNNING]
        if not running:
            if ctl.get_live_trials():
                raise RuntimeError(f"{type(scheduler).__name__}: every live trial waits and none can run")
            return spent
        trial = min(running, key=ReplayTrial.next_event)
        now = trial.next_event()
        step, value = trial.curve[trial.reported]
        spent += step - trial.step
        trial.reported += 1
        result = {"step": step, "eval_ce": value, "training_iteration": trial.reported, "trial_id": trial.trial_id}
        trial.last_result = result
        decision = scheduler.on_trial_result(ctl, trial, result)
        if step >= max_t or decision == STOP:
            scheduler.on_trial_complete(ctl, trial, result)
            trial.status = TERMINATED
        elif decision == PAUSE:
            trial.status = PAUSED


def load_curves(path: Path) -> dict[tuple, dict[int, list[tuple[int, float]]]]:
    """(rank, scaling) -> seed -> [(step, eval_ce), ...] sorted by step."""
    rows = pq.read_table(path).to_pylist()
    curves: dict[tuple, dict[int, list]] = {}
    for r in rows:
        curves.setdefault((r["rank"], r["scaling"]), {}).setdefault(r["seed"], []).append((r["step"], r["eval_ce"]))
    for seeds in curves.values():
        for points in seeds.values():
            points.sort()
    return curves


def score(curves, trials: list[ReplayTrial], max_t: int) -> dict:
    """Survival, choice and regret of one replay, from what ran to the end."""
    finals = {c: statistics.mean(p[-1][1] for p in seeds.values()) for c, seeds in curves.items()}
    best = min(finals, key=finals.get)
    sd = statistics.mean(statistics.variance([p[-1][1] for p in seeds.values()]) for seeds in curves.values()) ** 0.5
    completed: dict[tuple, list[float]] = {}
    for t in trials:
        if t.step >= max_t:
            completed.setdefault(t.config["key"], []).append(t.curve[-1][1])
    chosen = min(completed, key=lambda c: statistics.mean(completed[c]))
    return {"survived": best in completed, "chosen": chosen == best, "regret": (finals[chosen] - finals[best]) / sd}


def scheduler_for(kind: str, args) -> object:
    sets = [f"scheduler.type={kind}", f"scheduler.grace_period={args.grace}",
            f"scheduler.reduction_factor={args.reduction_factor}", f"scheduler.interval={args.interval}"]
    return build_scheduler(load_spec(SWEEP, sets))


def run(args) -> list[dict]:
    curves = load_curves(args.data)
    max_t = max(p[-1][0] for seeds in curves.values() for p in seeds.values())
    total = sum(len(seeds) for seeds in curves.values()) * max_t
    rng = random.Random(args.seed)
    orders = [rng.sample(sorted(curves), len(curves)) for _ in range(args.orders)]
    table = []
    for kind in args.schedulers:
        outcomes, spent = [], []
        for order in orders:
            trials = [ReplayTrial(f"{c[0]}-{c[1]}-{s}", {"key": c, "lora": {"rank": c[0], "scaling": c[1]},
                                                     "train": {"seed": s}}, curves[c][s])
                      for c in order for s in sorted(curves[c])]
            spent.append(replay(scheduler_for(kind, args), trials, args.concurrency, max_t) / total)
            outcomes.append(score(curves, trials, max_t))
        table.append({
            "scheduler": kind, "steps": statistics.mean(spent),
            "survived": sum(o["survived"] for o in outcomes) / len(outcomes),
            "chosen": sum(o["chosen"] for o in outcomes) / len(outcomes),
            "regret": statistics.mean(o["regret"] for o in outcomes),
            "regret_max": max(o["regret"] for o in outcomes),
        })
    return table


def export(results: Path, out: Path) -> None:
    """The sweep's latest rows, only the columns the replay needs."""
    from orchestrator.store import read_results
    import pyarrow.compute as pc

    rows = read_results(results, filter=pc.field("experiment") == EXPERIMENT).select(KEEP)
    rows = rows.sort_by([("rank", "ascending"), ("scaling", "ascending"), ("seed", "ascending"), ("step", "ascending")])
    pq.write_table(rows, out, compression="zstd")
    print(f"{out}: {rows.num_rows} rows, {out.stat().st_size / 1024:.0f} KiB")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--export", type=Path, help="a results directory holding the finished sweep")
    parser.add_argument("--schedulers", nargs="+", default=["fifo", "asha", "hyperband", "median", "curve"])
    parser.add_argument("--grace", type=int, default=30, help="grace period in steps (asha, median, curve)")
    parser.add_argument("--reduction-factor", type=float, default=3.0)
    parser.add_argument("--interval", type=float, default=0.9, help="curve: coverage of the interval")
    parser.add_argument("--concurrency", type=int, default=2, help="live trials at once (the spec's)")
    parser.add_argument("--orders", type=int, default=20, help="random orders of the configurations")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.export:
        export(args.export, args.data)
        return 0
    table = run(args)
    print(f"{args.data.name}: grace {args.grace} steps, reduction factor {args.reduction_factor:g}, curve interval "
          f"{args.interval:g}, {args.concurrency} live trials, mean over {args.orders} orders")
    print("| scheduler | steps vs FIFO | best survived | best chosen | regret (seed sd) | worst regret |")
    print("|---|---:|---:|---:|---:|---:|")
    for row in table:
        print(f"| {row['scheduler']} | {row['steps']:.1%} | {row['survived']:.0%} | {row['chosen']:.0%} | "
              f"{row['regret']:.2f} | {row['regret_max']:.2f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
