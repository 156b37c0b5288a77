"""Seeds as replicas: one Tune trial per seed for every configuration a searcher suggests.

A searcher that learns from results (Optuna) must see one objective per configuration, not
one per seed, or it would chase seed noise. :class:`SeedReplicator` asks its inner searcher
for a configuration, hands it out once per seed (only ``train.seed`` differs), and when every
seed has finished tells the inner searcher the mean of the seeds' final metrics:

- all seeds ran to ``train.steps``: the mean of each metric (a NaN mean makes Optuna mark
  the configuration failed);
- some seed errored (after its retries) or diverged: the configuration is reported as an error;
- otherwise some seed was stopped early by the scheduler: reported with no value (Optuna:
  pruned), since means over different step counts are not comparable.

Intermediate results are not forwarded: the seeds share one inner trial.
"""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field

from ray.tune.search import Searcher
from ray.tune.search.search_generator import SearchGenerator


@dataclass
class _Group:
    """One configuration and what its seeds reported; ``key`` is the inner searcher's id."""

    key: str
    config: dict
    seeds: list[int]
    trials: list[str] = field(default_factory=list)
    outcomes: dict[str, tuple[str, dict | None]] = field(default_factory=dict)

    def full(self) -> bool:
        return len(self.trials) >= len(self.seeds)

    def done(self) -> bool:
        return len(self.outcomes) >= len(self.seeds)


class SeedReplicator(Searcher):
    """Runs each suggested configuration once per seed and reports the seeds' mean."""

    def __init__(self, searcher: Searcher, seeds: list[int], *, steps: int, seed_path: str = "train.seed"):
        if not seeds:
            raise ValueError("SeedReplicator needs at least one seed")
        self.searcher = searcher  # the attribute name Tune walks to save and restore wrappers
        self.seeds = list(seeds)
        self.steps = steps
        self.seed_path = seed_path.split(".")
        self._groups: dict[str, _Group] = {}
        self._group_of: dict[str, str] = {}
        self._open: str | None = None
        super().__init__(metric=searcher.metric, mode=searcher.mode)

    def set_search_properties(self, metric, mode, config: dict, **spec) -> bool:
        """The inner searcher sees the space with the seed fixed: seeds are not a parameter."""
        config = copy.deepcopy(config)
        _set(config, self.seed_path, self.seeds[0])
        return self.searcher.set_search_properties(metric, mode, config, **spec)

    def suggest(self, trial_id: str):
        group = self._groups.get(self._open) if self._open else None
        if group is None or group.full():
            config = self.searcher.suggest(trial_id)
            if config is None or config == Searcher.FINISHED:
                return config
            group = _Group(trial_id, copy.deepcopy(config), self.seeds)
            self._groups[trial_id] = group
            self._open = trial_id
        seed = group.seeds[len(group.trials)]
        group.trials.append(trial_id)
        self._group_of[trial_id] = group.key
        config = copy.deepcopy(group.config)
        _set(config, self.seed_path, seed)
        return config

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        pass  # seeds share one inner trial; only the mean of final results is reported

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        key = self._group_of.get(trial_id)
        if key is None or key not in self._groups:
            return
        group = self._groups[key]
        if error or (result and result.get("diverged")):
            outcome = "error"
        elif not result or (result.get("step") or 0) < self.steps:
            outcome = "stopped"
        else:
            outcome = "completed"
        kept = {name: result.get(name) for name in _names(self.metric)} if result else None
        group.outcomes[trial_id] = (outcome, kept)
        if group.done():
            self._report(group)

    def _report(self, group: _Group) -> None:
        outcomes = [outcome for outcome, _ in group.outcomes.values()]
        if "error" in outcomes:
            self.searcher.on_trial_complete(group.key, result=None, error=True)
        elif "stopped" in outcomes:
            self.searcher.on_trial_complete(group.key, result=None, error=False)
        else:
            results = [result for _, result in group.outcomes.values()]
            self.searcher.on_trial_complete(group.key, result=mean_metrics(results, self.metric))
        del self._groups[group.key]
        for trial_id in group.trials:
            self._group_of.pop(trial_id, None)

    def get_state(self) -> dict:
        state = self.__dict__.copy()
        del state["searcher"]
        return state

    def set_state(self, state: dict) -> None:
        self.__dict__.update(state)

    def save(self, checkpoint_path: str) -> None:
        self.searcher.save(checkpoint_path)

    def restore(self, checkpoint_path: str) -> None:
        self.searcher.restore(checkpoint_path)


def mean_metrics(results: list[dict], metric: str | list[str] | None) -> dict:
    """Mean over seeds of each searched metric; a seed missing a metric makes it NaN."""
    out = {}
    for name in _names(metric):
        values = [r.get(name) for r in results]
        ok = all(isinstance(v, (int, float)) for v in values)
        out[name] = sum(values) / len(values) if ok and values else math.nan
    return out


class PerConfigurationSearch(SearchGenerator):
    """Tune's SearchGenerator with ``num_samples`` counted in configurations: each runs
    ``trials_per_sample`` trials (one per seed), so Tune's trial budget is multiplied."""

    def __init__(self, searcher: Searcher, trials_per_sample: int):
        super().__init__(searcher)
        self.trials_per_sample = trials_per_sample

    def add_configurations(self, experiments) -> None:
        super().add_configurations(experiments)
        self._total_samples *= self.trials_per_sample


def _names(metric: str | list[str] | None) -> list[str]:
    return [] if metric is None else [metric] if isinstance(metric, str) else list(metric)


def _set(config: dict, path: list[str], value) -> None:
    for part in path[:-1]:
        config = config.setdefault(part, {})
    config[path[-1]] = value
