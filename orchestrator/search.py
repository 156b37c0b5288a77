"""Search algorithm and scheduler of a sweep, from the spec's ``search`` and ``scheduler``.

- ``grid``: Tune's BasicVariantGenerator runs every grid point once.
- ``random``: ``num_samples`` independent draws; with a ``train.seed`` grid each draw runs
  once per seed (see ``orchestrator.seeds``).
- ``optuna``: Ray's ``OptunaSearch`` with a TPE, CMA-ES or NSGA-II sampler, one Optuna trial
  per configuration (the mean over its seeds). The study lives in a journal file in the
  experiment directory, named after the sweep, so ``--resume`` and later runs of the same
  spec add to it instead of starting over.
- ``fifo`` runs every trial to its last step; ``asha`` stops weak trials at rungs counted in
  optimizer steps (the trainable reports ``step``), with ``max_t = train.steps``.

Ray and Optuna are imported inside the builders: ``validate`` and ``--dry-run`` stay light.
"""
from __future__ import annotations

from pathlib import Path

from orchestrator.errors import UsageError
from orchestrator.search_rules import objectives, replicate_seeds, study_file, study_name
from orchestrator.spec import SweepSpec


def build_search_alg(spec: SweepSpec, experiment_dir: str):
    """None lets Tune use its BasicVariantGenerator (grid, and random without seed replicas).

    Otherwise a search generator whose ``num_samples`` counts configurations, over a
    ConcurrencyLimiter (``resources.max_concurrent_trials`` trials at once), over the
    seed replicator, over the sampler.
    """
    from ray.tune.search import ConcurrencyLimiter

    from orchestrator.random_search import RandomSearcher
    from orchestrator.seeds import PerConfigurationSearch, SeedReplicator

    seeds = replicate_seeds(spec)  # None for grid, and for random without a seed grid
    if seeds is None:
        return None
    if spec.search.algorithm == "optuna":
        inner = optuna_searcher(spec, experiment_dir)
    else:
        inner = RandomSearcher()
    replicated = SeedReplicator(inner, seeds, steps=spec.train.steps)
    limited = ConcurrencyLimiter(replicated, max_concurrent=spec.resources.max_concurrent_trials)
    return PerConfigurationSearch(limited, trials_per_sample=len(seeds))


def optuna_searcher(spec: SweepSpec, experiment_dir: str):
    """Ray's OptunaSearch on a journal-file study that outlives the run."""
    from ray.tune.search.optuna import OptunaSearch

    from orchestrator.samplers import make_sampler

    metrics, modes = objectives(spec)
    storage = open_storage(study_file(spec, experiment_dir))
    prepare_study(storage, study_name(spec), metrics, modes)
    single = len(metrics) == 1
    return OptunaSearch(
        metric=metrics[0] if single else metrics,
        mode=modes[0] if single else modes,
        sampler=make_sampler(spec.search.sampler),
        study_name=study_name(spec),
        storage=storage,
    )


def open_storage(path: Path):
    import optuna

    path.parent.mkdir(parents=True, exist_ok=True)
    return optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(path)))


def prepare_study(storage, name: str, metrics: list[str], modes: list[str]) -> None:
    """Create the study, or check that the stored one optimises the same metrics in the same
    directions: Optuna would silently load it with its old directions and reject results."""
    import optuna

    want = ["minimize" if m == "min" else "maximize" for m in modes]
    study = optuna.create_study(study_name=name, storage=storage, directions=want, load_if_exists=True)
    have_metrics = study.user_attrs.get("metrics")
    if have_metrics is None:
        study.set_user_attr("metrics", list(metrics))
        have_metrics = list(metrics)
    have = [d.name.lower() for d in study.directions]
    if have != want or have_metrics != list(metrics):
        raise UsageError(
            f"search.metric/search.mode: the Optuna study {name!r} in this experiment directory "
            f"optimises {have_metrics} ({', '.join(have)}), this spec asks for {list(metrics)} "
            f"({', '.join(want)}); allowed: the same metrics and modes, or a new search.study_name"
        )


def build_scheduler(spec: SweepSpec):
    """ASHA compares trials on ``step`` (reported with every evaluation), so
    ``grace_period`` is in optimizer steps and a rung takes effect at the first evaluation
    at or past it."""
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler

    s = spec.scheduler
    if s.type == "fifo":
        return FIFOScheduler()
    return ASHAScheduler(
        time_attr="step",
        metric=s.metric,
        mode=s.mode,
        max_t=spec.train.steps,
        grace_period=s.grace_period,
        reduction_factor=s.reduction_factor,
    )
