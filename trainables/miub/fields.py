"""The result fields an evaluation reports for MIUB (the store's miub* columns)."""

from __future__ import annotations

from torch import Tensor

from trainables.miub.collector import MiubCollector


def miub_fields(collector: MiubCollector, stats: Tensor) -> dict:
    """``miub``, ``miub_layers``, ``miub_estimator`` and ``miub_se`` for the first estimator,
    and ``miub_<name>`` for every estimator (the first included), from all-reduced stats."""
    results = collector.results(stats)
    value, layers = results[collector.estimator_name]
    fields = {
        "miub": value,
        "miub_layers": layers,
        "miub_estimator": collector.estimator_name,
        "miub_se": collector.standard_error(stats),
    }
    fields.update({f"miub_{name}": figure for name, (figure, _) in results.items()})
    return fields
