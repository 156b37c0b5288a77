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

from orchestrator.spec import fit_checks
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
    problems += fit_checks.model_directory_problems(values_of(spec.model.name))
    problems += fit_checks.results_path_problems(spec.results.path)
    problems += fit_checks.batch_problems(spec.train.batch_size, values_of(spec.data.train_size))
    if not problems:  # tokenising needs the tasks and models to be sound
        problems += fit_checks.seq_len_problems(spec, values_of(spec.model.name), values_of(spec.data.task),
                                                values_of(spec.data.complexity))
    if spec.deepspeed.config and not Path(spec.deepspeed.config).is_file():
        problems.append(f"deepspeed.config: {spec.deepspeed.config!r} is not a file; give a DeepSpeed JSON config")
    elif spec.deepspeed.config:
        problems += deepspeed_config_problems(spec)
    if spec.metrics.miub.enabled:
        problems += estimator_problems(spec.metrics.miub.estimators, spec.metrics.miub.imports)
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


def estimator_problems(estimators: Iterable[str], imports: Iterable[str] = ()) -> list[str]:
    """Import ``imports`` (modules that register estimators), then look each estimator up."""
    problems = []
    for module in imports:
        try:
            importlib.import_module(module)
        except Exception as exc:  # any failure of a user's module is a problem with the spec
            problems.append(f"metrics.miub.imports: {module!r} cannot be imported: {type(exc).__name__}: {exc}")
    estimators = list(estimators)
    if estimators == ["jsd_topk"] and not imports:
        return problems  # the built-in default: no need to import torch to know it exists
    from trainables.miub import get_estimator

    for estimator in estimators:
        try:
            get_estimator(estimator)
        except ValueError as exc:
            problems.append(f"metrics.miub.estimators: {exc}")
    return problems


def deepspeed_config_problems(spec) -> list[str]:
    """The user's DeepSpeed config against the spec: every field the spec decides must be
    ``"auto"``, absent, or the spec's value (a searched field's only allowed form is "auto")."""
    import json

    from trainables import ds_user_config

    path = spec.deepspeed.config
    try:
        user = ds_user_config.load(path)
    except (OSError, json.JSONDecodeError) as exc:
        return [f"deepspeed.config: {path!r} is not a JSON object: {exc}"]
    if not isinstance(user, dict):
        return [f"deepspeed.config: {path!r} is not a JSON object"]
    searched = _Searched()  # differs from any concrete value: only "auto" fits every trial
    workers = spec.resources.num_workers
    lr = spec.train.lr if isinstance(spec.train.lr, (int, float)) else searched
    decided = {
        "train_micro_batch_size_per_gpu": spec.train.micro(workers),
        "gradient_accumulation_steps": spec.train.accumulation(workers),
        "train_batch_size": spec.train.batch_size,
        "gradient_clipping": spec.train.grad_clip,
        "optimizer.params.lr": lr,
        "zero_optimization.stage": spec.deepspeed.zero_stage,
    }
    try:
        ds_user_config.resolve(user, decided, source=f"deepspeed.config ({path})")
    except ds_user_config.ConfigConflict as exc:
        return str(exc).splitlines()
    return []


class _Searched:
    def __eq__(self, other) -> bool:
        return False

    __hash__ = object.__hash__

    def __repr__(self) -> str:
        return "a value per trial (it is searched)"
