"""Random search as a Tune ``Searcher``, so seed replicas can wrap it.

Tune's own random search (BasicVariantGenerator) is not a Searcher and draws every trial
independently; a sweep with a ``train.seed`` grid needs each draw run once per seed.
"""
from __future__ import annotations

from ray.tune.search import Searcher
from ray.tune.search.variant_generator import parse_spec_vars


class RandomSearcher(Searcher):
    """Independent draws from the search domains of Tune's ``param_space``."""

    def __init__(self):
        super().__init__()
        self._domains: list[tuple[tuple, object]] = []

    def set_search_properties(self, metric, mode, config: dict, **spec) -> bool:
        _, self._domains, _ = parse_spec_vars(config)
        return True

    def suggest(self, trial_id: str) -> dict:
        config: dict = {}
        for path, domain in self._domains:
            node = config
            for part in path[:-1]:
                node = node.setdefault(part, {})
            node[path[-1]] = domain.sample()
        return config

    def on_trial_complete(self, trial_id: str, result=None, error: bool = False) -> None:
        pass  # random draws do not learn from results
