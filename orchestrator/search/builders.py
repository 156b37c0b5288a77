"""Search algorithm and scheduler of a sweep, from the spec's ``search`` and ``scheduler``.

- ``grid``: Tune's BasicVariantGenerator runs every grid point once.
- ``random``: ``num_samples`` independent draws; with a ``train.seed`` grid each draw runs
  once per seed (see ``orchestrator.search.seeds``).
- ``optuna``: Ray's ``OptunaSearch`` with a TPE, CMA-ES or NSGA-II sampler, one Optuna trial
  per configuration (the mean over its seeds, with the seeds' mean at every evaluation as
  intermediate values). The study lives in a journal file in the
  experiment directory, named after the sweep, so ``--resume`` and later runs of the same
  spec add to it instead of starting over.
- ``law``: :class:`~orchestrator.search.law_searcher.LawSearcher`, seed-averaged like Optuna.
- ``fifo`` runs every trial to its last step; ``asha``, ``hyperband`` and ``median`` are
  Tune's schedulers and ``curve`` extrapolates each configuration's curve; all count time in
  optimizer steps (the trainable reports ``step``), with ``max_t = train.steps``.

Ray and Optuna are imported inside the builders: ``validate`` and ``--dry-run`` stay light.
"""
from __future__ import annotations

from orchestrator.experiment import study_backup, study_file, study_name
from orchestrator.search.rules import objectives, replicate_seeds
from orchestrator.spec.sections import SweepSpec


def build_search_alg(spec: SweepSpec):
    """None lets Tune use its BasicVariantGenerator (grid, and random without seed replicas).

    Otherwise a search generator whose ``num_samples`` counts configurations, over a
    ConcurrencyLimiter (``resources.max_concurrent_trials`` trials at once), over the
    seed replicator, over the sampler.
    """
    from ray.tune.search import ConcurrencyLimiter

    from orchestrator.search.random_searcher import RandomSearcher
    from orchestrator.search.seeds import PerConfigurationSearch, SeedReplicator

    seeds = replicate_seeds(spec)  # None for grid, and for random without a seed grid
    if seeds is None and spec.search.algorithm == "law":
        seeds = [spec.train.seed]  # the law search always sees one result per configuration
    if seeds is None:
        return None
    if spec.search.algorithm == "optuna":
        inner = optuna_searcher(spec)
    elif spec.search.algorithm == "law":
        from orchestrator.search.law_searcher import LawSearcher

        inner = LawSearcher.from_spec(spec)
    else:
        inner = RandomSearcher()
    replicated = SeedReplicator(inner, seeds, steps=spec.train.steps)
    limited = ConcurrencyLimiter(replicated, max_concurrent=spec.resources.max_concurrent_trials)
    return PerConfigurationSearch(limited, trials_per_sample=len(seeds))


def optuna_searcher(spec: SweepSpec):
    """Ray's OptunaSearch on a journal-file study that outlives the run."""
    from orchestrator.search.samplers import make_sampler
    from orchestrator.search.study_search import StudySearch
    from orchestrator.search.study import open_storage, prepare_study

    metrics, modes = objectives(spec)
    storage = open_storage(study_file(spec), backup=study_backup(spec))
    prepare_study(storage, study_name(spec), metrics, modes)
    single = len(metrics) == 1
    return StudySearch(
        metric=metrics[0] if single else metrics,
        mode=modes[0] if single else modes,
        sampler=make_sampler(spec.search.sampler),
        study_name=study_name(spec),
        storage=storage,
    )


def build_scheduler(spec: SweepSpec):
    """Every scheduler compares trials on ``step`` (reported with every evaluation), so its
    times are optimizer steps and a rung or milestone takes effect at the first evaluation at
    or past it. ``curve`` is :class:`orchestrator.search.curve_scheduler.CurveScheduler`."""
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler, HyperBandScheduler, MedianStoppingRule

    s, steps = spec.scheduler, spec.train.steps
    if s.type == "fifo":
        return FIFOScheduler()
    if s.type == "asha":
        return ASHAScheduler(time_attr="step", metric=s.metric, mode=s.mode, max_t=steps,
                             grace_period=s.grace_period, reduction_factor=s.reduction_factor)
    if s.type == "hyperband":
        return HyperBandScheduler(time_attr="step", metric=s.metric, mode=s.mode, max_t=steps,
                                  reduction_factor=s.reduction_factor)
    if s.type == "median":
        return MedianStoppingRule(time_attr="step", metric=s.metric, mode=s.mode,
                                  grace_period=s.grace_period, min_samples_required=s.min_samples)
    from orchestrator.search.curve_scheduler import CurveScheduler

    return CurveScheduler(metric=s.metric, mode=s.mode, max_t=steps, grace_period=s.grace_period,
                          min_points=s.min_points, interval=s.interval)
