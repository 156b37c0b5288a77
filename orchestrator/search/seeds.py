"""Seeds as replicas: one Tune trial per seed for every configuration a searcher suggests.

A searcher that learns from results (Optuna) must see one objective per configuration, not
one per seed, or it would chase seed noise. :class:`SeedReplicator` asks its inner searcher
for a configuration and hands it out once per seed (only ``train.seed`` differs).

Every evaluation step that all of a configuration's seeds have reported is forwarded to the
inner searcher once, as the seeds' mean (Optuna records it as an intermediate value at that
optimizer step). When every seed has finished the inner searcher is told:

- all seeds ran to ``train.steps``: the mean of each metric's final value (a NaN mean makes
  Optuna mark the configuration failed);
- some seed errored (after its retries) or diverged: the configuration is reported as an error;
- otherwise some seed was stopped early by the scheduler. With one metric it is reported with
  no value, which Optuna records as PRUNED with its last intermediate value, the seeds' mean
  at the last step they all reached: TPE ranks pruned trials by how far they got and that
  value. Optuna keeps no intermediate values for several metrics, so there the means at that
  step are reported as the values (COMPLETE). Either way the study trial carries the user
  attribute ``stopped_at_step``.
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
    curves: dict[str, dict[int, dict]] = field(default_factory=dict)  # trial -> step -> metrics
    forwarded: list[int] = field(default_factory=list)  # steps told to the inner searcher, in order

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
        group = self._group(trial_id)
        if group is not None and result:
            self._record(group, trial_id, result)
            self._forward(group)

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        group = self._group(trial_id)
        if group is None:
            return
        if result and not error:
            self._record(group, trial_id, result)  # Tune does not pass a stopping result to on_trial_result
            self._forward(group)
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

    def _group(self, trial_id: str) -> _Group | None:
        key = self._group_of.get(trial_id)
        return self._groups.get(key) if key is not None else None

    def _record(self, group: _Group, trial_id: str, result: dict) -> None:
        step = result.get("step")
        if isinstance(step, (int, float)) and not result.get("diverged"):
            group.curves.setdefault(trial_id, {})[int(step)] = {n: result.get(n) for n in _names(self.metric)}

    def _common_steps(self, group: _Group) -> list[int]:
        """Steps every seed of the configuration has reported (all seeds must have started)."""
        if len(group.curves) < len(group.seeds):
            return []
        return sorted(set.intersection(*(set(curve) for curve in group.curves.values())))

    def _forward(self, group: _Group) -> None:
        """Tell the inner searcher the seeds' mean at every step they all reached, once, in order."""
        for step in self._common_steps(group):
            if group.forwarded and step <= group.forwarded[-1]:
                continue
            means = mean_metrics([curve[step] for curve in group.curves.values()], self.metric)
            if all(isinstance(v, float) and math.isfinite(v) for v in means.values()):
                self.searcher.on_trial_result(group.key, {**means, "step": step, "training_iteration": step})
                group.forwarded.append(step)

    def _report(self, group: _Group) -> None:
        outcomes = [outcome for outcome, _ in group.outcomes.values()]
        if "error" in outcomes:
            self.searcher.on_trial_complete(group.key, result=None, error=True)
        elif "stopped" in outcomes:
            self._forward(group)
            last = group.forwarded[-1] if group.forwarded else None
            _note(self.searcher, group.key, {"stopped_at_step": last, "seeds": len(group.seeds)})
            if len(_names(self.metric)) > 1 and last is not None:
                means = mean_metrics([curve[last] for curve in group.curves.values()], self.metric)
                self.searcher.on_trial_complete(group.key, result=means)
            else:  # Optuna: PRUNED, its value the last intermediate one
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


def _note(searcher: Searcher, key: str, attributes: dict) -> None:
    """User attributes for the inner searcher's trial, where it keeps them (Optuna)."""
    note = getattr(searcher, "set_trial_attributes", None)
    if note is not None:
        note(key, attributes)


def _names(metric: str | list[str] | None) -> list[str]:
    return [] if metric is None else [metric] if isinstance(metric, str) else list(metric)


def _set(config: dict, path: list[str], value) -> None:
    for part in path[:-1]:
        config = config.setdefault(part, {})
    config[path[-1]] = value
