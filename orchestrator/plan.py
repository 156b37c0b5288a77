"""``lorasweep run --dry-run``: what a sweep would do, without starting Ray.

A grid prints every trial; a sampler prints its search space, sampler, sample count, seeds
per configuration and the Optuna study it would add to; both print the scheduler.
"""
from __future__ import annotations

from orchestrator.experiment import study_file, study_name
from orchestrator.search.rules import (
    SEED_PATH, asha_rungs, curve_decision_steps, form_name, form_values, hyperband_brackets, objectives,
    replicate_seeds, search_axes,
)
from orchestrator.spec.forms import LogRandInt, PowersOfTwo
from orchestrator.spec.sections import SweepSpec
from orchestrator.table import format_table
from orchestrator.spec.trials import config_columns, expand_grid, get_path, trial_template

PLAN_COLUMNS = ["model", "task", "train_size", "complexity", "rank", "alpha", "scaling", "scale_factor", "lr", "seed"]
# Plan column -> trial config path, for the values a sampled sweep keeps fixed.
FIXED_PATHS = {
    "model": "model.name", "task": "data.task", "train_size": "data.train_size", "complexity": "data.complexity",
    "rank": "lora.rank", "alpha": "lora.alpha", "scaling": "lora.scaling", "lr": "train.lr", "seed": "train.seed",
}


def describe_plan(spec: SweepSpec) -> str:
    body = _grid_plan(spec) if spec.search.algorithm == "grid" else _sampled_plan(spec)
    return "\n".join(body + [_scheduler_line(spec), _concurrency_line(spec)])


def _grid_plan(spec: SweepSpec) -> list[str]:
    configs = expand_grid(spec)
    steps, every = spec.train.steps, spec.train.eval_every
    head = (
        f"{spec.name}: grid search, {len(configs)} trials x {steps} steps, "
        f"evaluation every {every} steps ({len(configs) * _evaluations(steps, every)} result rows)"
    )
    from orchestrator.spec.memory import describe as describe_memory

    memory = [f"trial {i}: {describe_memory(c)}" for i, c in enumerate(configs)]
    return [head, format_table([config_columns(c) for c in configs], PLAN_COLUMNS), *memory]


def _sampled_plan(spec: SweepSpec) -> list[str]:
    search, train = spec.search, spec.train
    seeds = replicate_seeds(spec)
    per_config = len(seeds) if seeds else 1
    trials = search.num_samples * per_config
    lines = [f"{spec.name}: {search.algorithm} search" + (_objective(spec) if search.algorithm == "optuna" else "")]
    if seeds:
        lines.append(
            f"samples: {search.num_samples} configurations x {per_config} seeds per configuration "
            f"({SEED_PATH} {', '.join(map(str, seeds))}) = {trials} trials x {train.steps} steps, "
            f"evaluation every {train.eval_every} steps"
        )
    else:
        lines.append(
            f"samples: {trials} independent draws, 1 trial each, x {train.steps} steps, "
            f"evaluation every {train.eval_every} steps"
        )
    if search.algorithm == "optuna":
        metrics, _ = objectives(spec)
        lines.append(f"objective per configuration: the mean over its seeds of the final {', '.join(metrics)}")
    lines.append("search space:")
    found = [(p, f) for p, f in search_axes(spec) if not (seeds and p == SEED_PATH)]
    width = max((len(p) for p, _ in found), default=0)
    for path, form in found:
        lines.append(f"  {path.ljust(width)}  {form_name(form)} {form_values(form)}{_form_note(form)}")
    if not found:
        lines.append("  (no axes: every sample runs the same configuration)")
    lines.append("fixed: " + _fixed(spec, {p for p, _ in search_axes(spec)}))
    if search.algorithm == "optuna":
        lines.append(_study_line(spec))
    return lines


def _form_note(form) -> str:
    if isinstance(form, PowersOfTwo):
        return f" (a choice over {', '.join(map(str, form.choice))})"
    if isinstance(form, LogRandInt):
        return " (integers, log-uniform)"
    return ""


def _objective(spec: SweepSpec) -> str:
    metrics, modes = objectives(spec)
    goals = ", ".join(f"{'minimise' if m == 'min' else 'maximise'} {name}" for name, m in zip(metrics, modes))
    return f", sampler {spec.search.sampler}, {goals}"


def _fixed(spec: SweepSpec, axis_paths: set[str]) -> str:
    template = trial_template(spec)
    return " ".join(
        f"{column}={get_path(template, path)}" for column, path in FIXED_PATHS.items() if path not in axis_paths
    )


def _study_line(spec: SweepSpec) -> str:
    """The study a run would add to, and how many trials it already holds."""
    path = study_file(spec)
    name = study_name(spec)
    if not path.is_file():
        return f"study: {name!r} in {path} (new)"
    from orchestrator.search.study import trial_count

    count = trial_count(path, name)
    if count is None:
        return f"study: {name!r} in {path} (new study in an existing journal)"
    return f"study: {name!r} in {path} (has {count} trials: this run adds to them)"


def _scheduler_line(spec: SweepSpec) -> str:
    s, steps = spec.scheduler, spec.train.steps
    if s.type == "fifo":
        return f"scheduler: fifo (every trial runs to step {steps})"
    kept = "a stopped trial keeps its rows, the last with status 'stopped'"
    on = f"scheduler: {s.type} on {s.metric} ({s.mode})"
    if s.type == "asha":
        rungs = [r for r in asha_rungs(spec) if r < steps]
        return (
            f"{on}, grace period {s.grace_period} steps, reduction factor {s.reduction_factor:g}, max {steps} "
            f"steps: trials compared at steps {_join(rungs)}{_at_evaluations(rungs, spec)}; {kept}"
        )
    if s.type == "hyperband":
        brackets = "; ".join(
            f"{n} trials halved at steps {_join(halvings)}{_at_evaluations(halvings, spec)}" if halvings
            else f"{n} trials run to the end"
            for n, halvings in hyperband_brackets(spec)
        )
        return (
            f"{on}, reduction factor {s.reduction_factor:g}, max {steps} steps, synchronous (trials pause at "
            f"milestones until their bracket catches up): brackets {brackets}; {kept}"
        )
    if s.type == "median":
        return (
            f"{on}, grace period {s.grace_period} steps: from then on a trial whose best value is worse than the median "
            f"of the others' running means (once {s.min_samples} others reached that step) is stopped; {kept}"
        )
    decisions = curve_decision_steps(spec)
    return (
        f"{on}: c + a * step^-b fitted to each configuration's seed-mean curve at steps {_join(decisions)} "
        f"(grace period {s.grace_period}, at least {s.min_points} evaluations); stopped when even the optimistic end of "
        f"its {s.interval:.0%} interval for step {steps} is worse than the best configuration's pessimistic end; "
        f"{kept} and its prediction (curve_pred, curve_lo, curve_hi, stop_reason)"
    )


def _at_evaluations(rungs: list, spec: SweepSpec) -> str:
    evals = sorted({_first_eval_at(r, spec.train.eval_every, spec.train.steps) for r in rungs})
    return "" if evals == rungs else f" (at the evaluations of steps {_join(evals)})"


def _concurrency_line(spec: SweepSpec) -> str:
    r = spec.resources
    return (
        f"concurrency: at most {r.max_concurrent_trials} trials at once, each {r.num_workers} worker(s) x "
        f"{r.cpus_per_worker:g} CPU, {r.gpus_per_worker:g} GPU"
    )


def _evaluations(steps: int, every: int) -> int:
    return steps // every + (1 if steps % every else 0)


def _first_eval_at(step: float, every: int, steps: int) -> int:
    """The first evaluation at or after ``step`` (evaluations: multiples of every, and the last step)."""
    k = -(-step // every)
    return int(min(k * every, steps))


def _join(values) -> str:
    return ", ".join(f"{v:g}" for v in values) or "none"
