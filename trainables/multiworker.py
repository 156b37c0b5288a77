"""A trial with several data-parallel workers: a Ray Train ``TorchTrainer`` launched from
inside the Tune function trainable (the Ray Train V2 way).

Every worker runs the same loop as a single-process trial (one DeepSpeed engine each,
ZeRO stage from the spec) on its shard of each global batch; evaluation sums are
all-reduced. ``TuneReportCallback`` streams every evaluation to Tune, so each step still
becomes one stored row. Fault tolerance sits in Ray Train: its run is named after the Tune
trial and kept in the sweep's storage, so a restarted trial (or a failed worker) resumes
from the run's latest checkpoint.
"""
from __future__ import annotations


from orchestrator.spec.trial_config import RuntimeSettings, TrialConfig


def _worker_loop(config: dict) -> None:
    from trainables.lora import quiet_ray_storage_logs, run_trial
    from trainables.session import TrainSession

    quiet_ray_storage_logs()
    run_trial(config, TrainSession())


def train_run_name(runtime: RuntimeSettings, trial_id: str) -> str:
    return f"{runtime.experiment}-{trial_id}"


def scaling_config(config: TrialConfig):
    """Workers, their CPUs/GPUs and placement: a trial needs num_workers x gpus_per_worker GPUs."""
    import ray.train

    res = config.resources
    use_gpu = res.gpus_per_worker > 0
    per_worker = {"CPU": res.cpus_per_worker}
    if use_gpu:
        per_worker["GPU"] = res.gpus_per_worker
    return ray.train.ScalingConfig(
        num_workers=res.num_workers,
        use_gpu=use_gpu,
        resources_per_worker=per_worker,
        placement_strategy=res.placement_strategy,
    )


def train_multiworker(config: dict, runtime: RuntimeSettings) -> None:
    """Ray Tune entry point of a trial with several workers: one Ray Train run per trial."""
    import ray.train
    from ray import tune
    from ray.train.torch import TorchConfig, TorchTrainer
    from ray.tune.integration.ray_train import TuneReportCallback

    from trainables.lora import quiet_ray_storage_logs

    quiet_ray_storage_logs()
    scaling = scaling_config(TrialConfig.model_validate(config))
    trial_id = tune.get_context().get_trial_id()
    trainer = TorchTrainer(
        _worker_loop,
        train_loop_config=config,
        scaling_config=scaling,
        torch_config=TorchConfig(backend="nccl" if scaling.use_gpu else "gloo"),
        run_config=ray.train.RunConfig(
            name=train_run_name(runtime, trial_id),
            storage_path=runtime.storage_path,
            failure_config=ray.train.FailureConfig(max_failures=runtime.max_failures),
            checkpoint_config=ray.train.CheckpointConfig(num_to_keep=2),
            callbacks=[TuneReportCallback()],
        ),
    )
    trainer.fit()
