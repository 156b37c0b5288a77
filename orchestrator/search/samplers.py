"""Optuna samplers that pickle as their recipe.

Ray pickles the search algorithm when it builds the Tuner and at every experiment snapshot,
and the sampler travels inside it. What a sampler holds is Optuna's business and changes
between releases (optuna 5.1's genetic samplers keep a ``threading.Lock``), so a sampler here
pickles as ``(name, seed)`` and is built afresh from that recipe when unpickled: a restored
sweep continues its study with the same sampler settings, whatever the sampler held.
"""
from __future__ import annotations

import optuna

SAMPLERS = ("tpe", "cmaes", "nsga2")


class _Rebuilt:
    """Mixin: pickles as the call that builds the sampler, not as its attributes."""

    _recipe: tuple[str, int | None]

    def __reduce__(self):
        return (make_sampler, self._recipe)


class TPE(_Rebuilt, optuna.samplers.TPESampler):
    pass


class CmaEs(_Rebuilt, optuna.samplers.CmaEsSampler):
    pass


class NSGAII(_Rebuilt, optuna.samplers.NSGAIISampler):
    pass


def make_sampler(name: str, seed: int | None = None) -> optuna.samplers.BaseSampler:
    """CMA-ES handles floats and ints; it leaves categorical choices to Optuna's random
    sampler. NSGA-II with one metric is a single-objective genetic algorithm."""
    builders = {
        "tpe": lambda: TPE(seed=seed),
        "cmaes": lambda: CmaEs(seed=seed, warn_independent_sampling=False),
        "nsga2": lambda: NSGAII(seed=seed),
    }
    if name not in builders:
        raise ValueError(f"unknown sampler {name!r}; allowed: {', '.join(SAMPLERS)}")
    sampler = builders[name]()
    sampler._recipe = (name, seed)
    return sampler
