"""MIUB: how much a LoRA module's output relies on the frozen module's features.

The definitions are lorasweep's own (docs/miub.md): Zhang et al. (arXiv 2501.03152) describe
the metric but publish no code. Estimators are pluggable so that other definitions can be
registered under their own names and compared in the same sweep: `jsd_topk` (the default),
`jsd_full` and `club_gauss` are built in.

Usage in an evaluation pass (the model in eval mode, so LoRA dropout is off):

    with MiubCollector(model, estimator=["jsd_topk", "club_gauss"]) as collector:
        for batch in loader:
            collector.set_mask(batch["attention_mask"])
            model(**batch)
    stats = collector.stats_tensor()   # all-reduce (SUM) this across data-parallel workers
    miub, miub_layers = collector.result(stats)          # the first estimator
    every = collector.results(stats)                      # {name: (value, layers)}

Modules: tokens (the per-token JSD and the top-k selection), registry (the estimator
interface), jsd and club (the built-in estimators), collector (the hooks).
"""

from trainables.miub import club, jsd  # noqa: F401  (registers the built-in estimators)
from trainables.miub.collector import MiubCollector
from trainables.miub.registry import (  # noqa: F401  (_REGISTRY: the registry itself, for tests)
    _REGISTRY,
    Estimator,
    TokenMeanEstimator,
    estimator_names,
    get_estimator,
    register_estimator,
)
from trainables.miub.tokens import LN2, miub_tokens, resolve_k, select_top_k, top_k_indices

__all__ = [
    "LN2",
    "Estimator",
    "MiubCollector",
    "TokenMeanEstimator",
    "estimator_names",
    "get_estimator",
    "miub_tokens",
    "register_estimator",
    "resolve_k",
    "select_top_k",
    "top_k_indices",
]
