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

from orchestrator.environment import environment_columns
from orchestrator.errors import UsageError
from orchestrator.experiment import experiment_dir, results_location, storage_path
from orchestrator.search.builders import build_scheduler, build_search_alg
from orchestrator.spec.forms import Choice, Grid, LogUniform, RandInt, Uniform
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


def build_tuner(spec: SweepSpec, trainable=None, search_alg=_UNSET) -> tune.Tuner:
    """The Tuner for ``spec``; ``trainable`` replaces the LoRA trainable (benchmarks);
    ``search_alg`` is one already built from ``spec``."""
    trainable = lora_trainable(spec) if trainable is None else tune.with_resources(trainable, trial_resources(spec))

    callback = StoreCallback(
        results_location(spec),  # an absolute path or a URI
        spec.name,
        config_columns=config_columns,
        total_steps=lambda config: config["train"]["steps"],
        static=environment_columns(),
        flush_rows=spec.results.flush_rows,
        flush_seconds=spec.results.flush_seconds,
    )
    if search_alg is _UNSET:
        search_alg = build_search_alg(spec)
    return tune.Tuner(
        trainable,
        param_space=param_space(spec),
        tune_config=tune.TuneConfig(
            search_alg=search_alg,
            scheduler=build_scheduler(spec),
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


def connect(address: str | None, num_cpus: int | None = None) -> None:
    """Embedded Ray by default; ``auto`` or ``ray://host:10001`` joins a cluster."""
    # Every evaluation checkpoints, so Tune snapshots the experiment often (num_to_keep forces
    # it) and would warn about that on every snapshot; the snapshots are what keeps rows safe.
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    if ray.is_initialized():
        return
    os.environ.setdefault("RAY_DEDUP_LOGS", "1")
    # Trials import ray.train before any lorasweep code runs: the V2 flag travels with them.
    runtime_env = {"env_vars": {"RAY_TRAIN_V2_ENABLED": os.environ["RAY_TRAIN_V2_ENABLED"]}}
    if address:
        ray.init(address=address, runtime_env=runtime_env)
    else:
        ray.init(num_cpus=num_cpus, include_dashboard=False, runtime_env=runtime_env)


def _trial_dirname(trial) -> str:
    """Short trial folder names: a config with many axes would exceed path limits."""
    return f"trial_{trial.trial_id}"


def run(
    spec: SweepSpec, *, address: str | None = None, num_cpus: int | None = None, resume: bool = False
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
        tuner = build_tuner(spec, search_alg=search_alg)
    results = tuner.fit()
    lifecycle.finalize_experiment(results_location(spec), spec.name)  # store: one row per (trial, step)
    return results
