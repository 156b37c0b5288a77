"""Checks of what a sweep's trials will need, made before Ray starts.

The spec's types cannot say that ``synthetic/kv-recal`` is no task, that a complexity is out
of its task's range, that ``zoo/llama-xxl`` is not in the zoo, or that a file is missing;
without these checks each would fail every trial, one Ray worker at a time. The registries
asked here (tasks, zoo recipes) import neither torch nor transformers; MIUB estimators are
imported only when a spec names one besides the built-in ``jsd_topk`` or asks for modules.
"""
from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any, Iterable

from orchestrator.spec.forms import Choice, Grid, RandInt


def values_of(field: Any) -> list:
    """The values a searchable field can take that can be listed (a range gives its ends)."""
    if isinstance(field, Grid):
        return list(field.grid)
    if isinstance(field, Choice):
        return list(field.choice)
    if isinstance(field, RandInt):
        return list(field.randint)
    return [field] if not hasattr(field, "model_fields") else []


def trial_problems(spec) -> list[str]:
    """One line per problem, each naming the field, the value and what is allowed."""
    problems = _task_problems(values_of(spec.data.task), values_of(spec.data.complexity))
    problems += _model_problems(values_of(spec.model.name))
    if spec.deepspeed.config and not Path(spec.deepspeed.config).is_file():
        problems.append(f"deepspeed.config: {spec.deepspeed.config!r} is not a file; give a DeepSpeed JSON config")
    if spec.metrics.miub.enabled:
        problems += estimator_problems(spec.metrics.miub.estimator, spec.metrics.miub.imports)
    if not problems:  # the estimate needs known models
        from orchestrator.spec.memory import memory_problems

        problems += memory_problems(spec)
    return problems


def _task_problems(tasks: Iterable[str], complexities: list) -> list[str]:
    from trainables.datasets_io import is_dataset_task
    from trainables.tasks import get_task

    problems = []
    for task in tasks:
        if task.startswith("file:"):
            path = task.removeprefix("file:")
            if not Path(path).is_file():
                problems.append(f"data.task: {task!r}: no such file {path!r}")
            continue
        if is_dataset_task(task):
            continue  # hf: names are resolved by `datasets` inside the trial
        try:
            family = get_task(task)
        except ValueError as exc:
            problems.append(f"data.task: {exc}")
            continue
        for complexity in complexities:
            try:
                family.check(complexity)
            except ValueError as exc:
                problems.append(f"data.complexity: {exc}")
    return problems


def _model_problems(names: Iterable[str]) -> list[str]:
    from trainables.models import zoo_recipe  # its error names the zoo's models

    problems = []
    for name in names:
        if name.startswith("zoo/"):
            try:
                zoo_recipe(name)
            except ValueError as exc:
                problems.append(f"model.name: {exc}")
    return problems


def estimator_problems(estimator: str, imports: Iterable[str] = ()) -> list[str]:
    """Import ``imports`` (modules that register estimators), then look ``estimator`` up."""
    problems = []
    for module in imports:
        try:
            importlib.import_module(module)
        except Exception as exc:  # any failure of a user's module is a problem with the spec
            problems.append(f"metrics.miub.imports: {module!r} cannot be imported: {type(exc).__name__}: {exc}")
    if estimator == "jsd_topk" and not imports:
        return problems  # the built-in default: no need to import torch to know it exists
    from trainables.miub import get_estimator

    try:
        get_estimator(estimator)
    except ValueError as exc:
        problems.append(f"metrics.miub.estimator: {exc}")
    return problems
