"""``lorasweep run --dry-run``: what a sweep would do, without starting Ray."""
from __future__ import annotations

from orchestrator.spec import Grid, SweepSpec
from orchestrator.table import format_table
from orchestrator.trial_config import axes, config_columns, expand_grid, trial_template

PLAN_COLUMNS = ["model", "task", "train_size", "complexity", "rank", "alpha", "scaling", "scale_factor", "lr", "seed"]


def describe_plan(spec: SweepSpec) -> str:
    if spec.search.algorithm == "grid":
        configs = expand_grid(spec)
        rows = [config_columns(c) for c in configs]
        steps = spec.train.steps
        head = (
            f"{spec.name}: grid search, {len(configs)} trials x {steps} steps, "
            f"evaluation every {spec.train.eval_every} steps ({len(configs) * (steps // spec.train.eval_every)} result rows)"
        )
        return head + "\n" + format_table(rows, PLAN_COLUMNS)
    found = list(axes(trial_template(spec)))
    lines = [
        f"{spec.name}: {spec.search.algorithm} search"
        + (f" (sampler {spec.search.sampler})" if spec.search.algorithm == "optuna" else "")
        + f", {spec.search.num_samples} samples, metric {spec.search.metric} ({spec.search.mode})",
        "search space:",
    ]
    for path, form in found:
        kind = next(iter(type(form).model_fields))
        lines.append(f"  {path}: {kind} {getattr(form, kind)}")
    if not found:
        lines.append("  (no axes: every sample runs the same configuration)")
    lines.append(f"scheduler: {spec.scheduler.type}")
    return "\n".join(lines)
