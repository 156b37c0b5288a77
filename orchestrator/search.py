"""Search algorithm and scheduler of a sweep, from the spec's ``search`` and ``scheduler``.

``grid`` enumerates every grid point once; ``random`` draws ``num_samples`` configurations.
``fifo`` runs every trial to its last step.
"""
from __future__ import annotations

from ray.tune.schedulers import FIFOScheduler

from orchestrator.errors import UsageError
from orchestrator.spec import SweepSpec


def build_search_alg(spec: SweepSpec, experiment_dir: str):
    """None lets Tune use its BasicVariantGenerator (grid and random search)."""
    if spec.search.algorithm in ("grid", "random"):
        return None
    raise UsageError(f"search.algorithm: {spec.search.algorithm!r} is not available in this build")


def build_scheduler(spec: SweepSpec):
    if spec.scheduler.type == "fifo":
        return FIFOScheduler()
    raise UsageError(f"scheduler.type: {spec.scheduler.type!r} is not available in this build")
