"""Estimators: the interface, and the registry that maps a spec's names onto them.

An estimator turns one module's per-batch (h, g, mask) into additive statistics (sums and
counts), and summed statistics into the module's value. Additivity is what lets a sum over
batches and an all-reduce over data-parallel workers give the single-pass figure.
"""

from __future__ import annotations

import abc
import math

from torch import Tensor

from trainables.miub.tokens import check_params


class Estimator(abc.ABC):
    """Turns one module's per-batch (h, g, mask) into additive statistics, then into a value.

    ``top_k``, ``temperature`` and ``noise`` hold the configured values (each estimator uses
    the ones its definition needs).
    """

    name: str = ""  # set by register_estimator

    def __init__(self, top_k=32, temperature: float = 1.0, noise: float = 0.1):
        check_params(top_k, temperature)
        if not (isinstance(noise, (int, float)) and 0 < noise < math.inf):
            raise ValueError(f"noise must be a finite number > 0, got {noise!r}")
        self.top_k = top_k
        self.temperature = temperature
        self.noise = noise

    @abc.abstractmethod
    def batch_stats(self, h: Tensor, g: Tensor, mask: Tensor) -> Tensor:
        """h, g: [B, T, d]; mask: [B, T] (1 = real token). Returns 1-D float64 additive stats."""

    @abc.abstractmethod
    def finalize(self, stats: Tensor) -> float:
        """Summed statistics (over batches and workers) -> the module's value."""


class TokenMeanEstimator(Estimator):
    """An estimator whose module value is the mean over real tokens of a per-token value.

    Stats: [sum of values, token count]. The collector calls :meth:`token_values` on the real
    tokens of many modules at once (one call per batch and width, not per module), and uses the
    per-token values for the standard error of the mean (``miub_se``).
    """

    @abc.abstractmethod
    def token_values(self, h: Tensor, g: Tensor) -> Tensor:
        """h, g: [N, d] real tokens (float32) -> [N] float32 values."""

    def batch_stats(self, h: Tensor, g: Tensor, mask: Tensor) -> Tensor:
        import torch

        keep = mask.to(device=h.device, dtype=torch.bool).reshape(-1)
        d = h.shape[-1]
        values = self.token_values(h.reshape(-1, d)[keep].float(), g.reshape(-1, d)[keep].float())
        return torch.stack([values.sum(dtype=torch.float64), keep.sum(dtype=torch.float64)])

    def finalize(self, stats: Tensor) -> float:
        total, count = stats.tolist()
        return total / count if count > 0 else math.nan


_REGISTRY: dict[str, type[Estimator]] = {}


def register_estimator(name: str):
    """Class decorator registering an Estimator under the name used in `metrics.miub.estimators`."""

    def decorate(cls: type[Estimator]) -> type[Estimator]:
        if not (isinstance(cls, type) and issubclass(cls, Estimator)):
            raise TypeError(f"MIUB estimator {name!r} must subclass Estimator, got {cls!r}")
        if name in _REGISTRY:
            raise ValueError(f"MIUB estimator {name!r} is already registered (by {_REGISTRY[name].__qualname__})")
        cls.name = name
        _REGISTRY[name] = cls
        return cls

    return decorate


def get_estimator(name: str) -> type[Estimator]:
    if name not in _REGISTRY:
        raise ValueError(f"unknown MIUB estimator {name!r}; registered: {', '.join(estimator_names())}")
    return _REGISTRY[name]


def estimator_names() -> list[str]:
    return sorted(_REGISTRY)
