"""Ray's ``OptunaSearch`` that can also label the study's trials.

The seed replicator tells a stopped configuration's study trial at which step its seeds'
mean was taken (``stopped_at_step``), so a reader of the study can tell a value measured at
``train.steps`` from one measured earlier. Ray's searcher keeps the Optuna trial of every
Tune trial id it suggested; this only writes user attributes onto it.
"""
from __future__ import annotations

from ray.tune.search.optuna import OptunaSearch


class StudySearch(OptunaSearch):
    def set_trial_attributes(self, trial_id: str, attributes: dict) -> None:
        trial = self._ot_trials.get(trial_id)
        if trial is not None:
            for name, value in attributes.items():
                trial.set_user_attr(name, value)
