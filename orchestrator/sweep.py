"""Spec -> ``ray.tune.Tuner``: search space, search algorithm, scheduler, resources, store.

The sweep picks the trainable: one process per trial (``trainables.lora``), or a Ray Train
run per trial when it has several workers (``trainables.multiworker``), which also gets the
sweep's :class:`~orchestrator.spec.trials.RuntimeSettings` beside its config. Where Ray's
state lives is :mod:`orchestrator.experiment`'s business.
"""
from __future__ import annotations

import json
import os

import ray
from ray import tune

from orchestrator.connection import connect
from orchestrator.environment import environment_columns
from orchestrator.errors import UsageError
from orchestrator.experiment import experiment_dir, results_location, storage_path
from orchestrator.search.builders import build_scheduler, build_search_alg
from orchestrator.spec.forms import Choice, Grid, LogRandInt, LogUniform, RandInt, Uniform
from orchestrator.spec.sections import SweepSpec
from orchestrator.spec.trial_config import RuntimeSettings
from orchestrator.spec.trials import axes, config_columns, set_path, trial_template
from orchestrator.store import lifecycle
from orchestrator.store.callback import StoreCallback


def param_space(spec: SweepSpec) -> dict:
    """The trial template with every axis turned into a Tune search domain."""
    template = json.loads(json.dumps(trial_template(spec), default=lambda o: None))
    for path, form in axes(trial_template(spec)):
        set_path(template, path, _domain(form, spec.search.algorithm))
    return template


def _domain(form, algorithm: str):
    if isinstance(form, Grid):
        return tune.grid_search(list(form.grid)) if algorithm == "grid" else tune.choice(list(form.grid))
    if isinstance(form, Choice):
        return tune.grid_search(list(form.choice)) if algorithm == "grid" else tune.choice(list(form.choice))
    if isinstance(form, Uniform):
        return tune.uniform(*form.uniform)
    if isinstance(form, LogUniform):
        return tune.loguniform(*form.loguniform)
    if isinstance(form, LogRandInt):
        lo, hi = form.bounds
        return tune.lograndint(lo, hi + 1)  # the spec's bounds are inclusive
    if isinstance(form, RandInt):
        lo, hi = form.randint
        return tune.randint(lo, hi + 1)  # the spec's bounds are inclusive
    raise TypeError(form)


def trial_resources(spec: SweepSpec):
    """One worker: the trial holds its CPUs/GPUs. Several: the trial holds a sliver and its
    Ray Train workers hold the rest (they are scheduled by the inner trainer)."""
    res = spec.resources
    if res.num_workers == 1:
        return {"cpu": res.cpus_per_worker, "gpu": res.gpus_per_worker}
    return {"cpu": 0.01}


def lora_trainable(spec: SweepSpec):
    """The trial function for ``spec``, with its resource request (imported on the driver
    only here)."""
    if spec.resources.num_workers == 1:
        from trainables.lora import train_lora as trainable
    else:
        from trainables.multiworker import train_multiworker

        runtime = RuntimeSettings(
            experiment=spec.name, storage_path=storage_path(spec), max_failures=spec.failures.max_failures
        )
        trainable = tune.with_parameters(train_multiworker, runtime=runtime)
    return tune.with_resources(trainable, trial_resources(spec))


_UNSET = object()


def build_tuner(spec: SweepSpec, trainable=None, search_alg=_UNSET, run_id: str | None = None) -> tune.Tuner:
    """The Tuner for ``spec``; ``trainable`` replaces the LoRA trainable (benchmarks);
    ``search_alg`` is one already built from ``spec``."""
    trainable = lora_trainable(spec) if trainable is None else tune.with_resources(trainable, trial_resources(spec))

    scheduler = build_scheduler(spec)
    callback = StoreCallback(
        results_location(spec),  # an absolute path or a URI
        spec.name,
        config_columns=config_columns,
        total_steps=lambda config: config["train"]["steps"],
        static={**environment_columns(), "run_id": run_id},
        flush_rows=spec.results.flush_rows,
        flush_seconds=spec.results.flush_seconds,
        row_columns=getattr(scheduler, "row_columns", None),  # the curve scheduler's predictions
    )
    if search_alg is _UNSET:
        search_alg = build_search_alg(spec)
    return tune.Tuner(
        trainable,
        param_space=param_space(spec),
        tune_config=tune.TuneConfig(
            search_alg=search_alg,
            scheduler=scheduler,
            num_samples=spec.search.num_samples if spec.search.algorithm != "grid" else 1,
            # A search algorithm carries its own ConcurrencyLimiter; Tune's would be ignored.
            max_concurrent_trials=None if search_alg is not None else spec.resources.max_concurrent_trials,
            reuse_actors=True,
            trial_dirname_creator=_trial_dirname,
        ),
        run_config=tune.RunConfig(
            name=spec.name,
            storage_path=storage_path(spec),
            callbacks=[callback, *lifecycle.run_callbacks(spec)],
            failure_config=tune.FailureConfig(max_failures=spec.failures.max_failures),
            checkpoint_config=tune.CheckpointConfig(num_to_keep=2),
            verbose=1,
        ),
    )


def _trial_dirname(trial) -> str:
    """Short trial folder names: a config with many axes would exceed path limits."""
    return f"trial_{trial.trial_id}"


def new_run_id() -> str:
    """A run's id: UTC start time and the driver's pid, unique per results path in practice."""
    import datetime as dt

    return f"{dt.datetime.now(dt.timezone.utc):%Y%m%dT%H%M%SZ}-{os.getpid()}"


def check_single_writer(spec: SweepSpec, *, resume: bool, append: bool) -> None:
    """A second run of an experiment that has rows needs --resume or --append (exit 2)."""
    if resume or append:
        return
    import pyarrow.compute as pc

    from orchestrator.store import read_results

    try:
        rows = read_results(spec.results.path, columns=["trial_id"], filter=pc.field("experiment") == spec.name)
    except (FileNotFoundError, UsageError):
        return
    if rows.num_rows:
        raise UsageError(
            f"experiment {spec.name!r} already has {rows.num_rows} rows in {spec.results.path}; allowed: --resume "
            f"(continue it), a new name (--set name=...), or --append (a new run_id, kept apart from seeds)"
        )


def run(
    spec: SweepSpec,
    *,
    address: str | None = None,
    num_cpus: int | None = None,
    resume: bool = False,
    run_id: str | None = None,
    on_connected=None,
) -> tune.ResultGrid:
    """Run the sweep; with ``resume``, continue the experiment of the same name where it stopped
    (finished trials are not run again, unfinished and errored ones continue from checkpoints).
    Problems found before Ray starts (no sweep to resume, a persisted Optuna study of other
    objectives) are raised as UsageError first; the Tuner itself is built once Ray is up, as
    Ray client mode requires."""
    path = experiment_dir(spec)
    if resume and not tune.Tuner.can_restore(path):
        raise UsageError(f"--resume: no interrupted sweep named {spec.name!r} at {path}")
    lifecycle.before_run(spec, resume=resume)  # store: durable results; journal back, compaction
    search_alg = None if resume else build_search_alg(spec)
    connect(address, num_cpus)
    if on_connected is not None:
        on_connected()
    from orchestrator.doctor import check_gpus

    check_gpus(spec)  # a GPU request the cluster can never meet: exit 2, not pending forever
    lifecycle.after_connect(spec, address)  # store: every node sees local storage
    if resume:
        tuner = tune.Tuner.restore(
            path,
            trainable=lora_trainable(spec),
            resume_unfinished=True,
            resume_errored=True,
            param_space=param_space(spec),
        )
    else:
        tuner = build_tuner(spec, search_alg=search_alg, run_id=run_id or new_run_id())
    with _without_restore_hints():
        results = tuner.fit()
    lifecycle.finalize_experiment(results_location(spec), spec.name)  # store: one row per (trial, step)
    return results


class _RestoreHintFilter:
    """Tune's own advice after an interrupt (``Tuner.restore(...)``) is wrong for a lorasweep
    sweep, which continues with ``lorasweep run ... --resume`` (the CLI says so)."""

    def filter(self, record) -> bool:
        message = record.getMessage()
        return "Tuner.restore(" not in message and not message.startswith("Trials did not complete")


class _without_restore_hints:
    def __enter__(self):
        import logging

        self.logger, self.hint_filter = logging.getLogger("ray.tune.tune"), _RestoreHintFilter()
        self.logger.addFilter(self.hint_filter)

    def __exit__(self, *exc):
        self.logger.removeFilter(self.hint_filter)
