"""``scheduler.type: curve``: stop a trial when its own curve, extrapolated, cannot win.

After every evaluation at or past the grace period, the trial's curve so far is fitted with a
saturating power law (:mod:`orchestrator.search.curve_fit`) and extrapolated to
``train.steps`` with a bootstrap interval. Seeds are averaged: a configuration's prediction
is the mean of its seeds' predictions (the seeds' bootstrap ends averaged resample by
resample), and configurations are compared, not seeds. A trial is stopped when even the
optimistic end of its configuration's interval is worse than the pessimistic end of the best
other configuration's (for a configuration whose seeds all finished, the pessimistic end is
what they measured). Once a configuration is stopped, its other seeds stop at their next
evaluation: the decision was about the configuration.

Every prediction is kept for the row the store writes for the same result
(:meth:`CurveScheduler.row_columns`, asked by the store callback right after Tune asked the
scheduler): ``curve_pred``, ``curve_lo``, ``curve_hi`` and, on the row where a trial is
stopped, ``stop_reason``. Tune calls the scheduler before the callbacks for each result, and
gives them different copies of it, so the scheduler cannot write into the row itself.

The scheduler's memory of curves is not part of Tune's experiment snapshot: after
``--resume`` it starts again from the results reported from then on.
"""
from __future__ import annotations

import math

from ray.tune.schedulers import FIFOScheduler, TrialScheduler

from orchestrator.search.curve_fit import FinalPrediction, mean_prediction, predict_final
from orchestrator.spec.trials import config_hash

CURVE_COLUMNS = ("curve_pred", "curve_lo", "curve_hi", "stop_reason")


def configuration_of(trial) -> str:
    """Seeds of one configuration share this key (the store's ``config_hash``)."""
    return config_hash(trial.config)


class CurveScheduler(FIFOScheduler):
    """Power-law extrapolation of each configuration's seed-mean curve (see the module)."""

    def __init__(self, *, metric: str, mode: str, max_t: int, grace_period: int, min_points: int = 4,
                 interval: float = 0.9, time_attr: str = "step", group=configuration_of, resamples: int = 200):
        super().__init__()
        self._metric, self._mode = metric, mode
        self._sign = 1.0 if mode == "min" else -1.0  # predictions are kept as "lower is better"
        self.max_t, self.grace_period, self.min_points = max_t, grace_period, min_points
        self.interval, self.time_attr, self.group, self.resamples = interval, time_attr, group, resamples
        self._curves: dict[str, dict[float, float]] = {}  # trial id -> step -> signed value
        self._members: dict[str, dict[str, FinalPrediction | None]] = {}  # configuration -> trial -> prediction
        self._configuration: dict[str, str] = {}  # trial id -> configuration
        self._summary: dict[str, tuple[float, float, float]] = {}  # configuration -> (pred, lo, hi), signed
        self._stopped: dict[str, str] = {}  # configuration -> why
        self._rows: dict[str, tuple[float, dict]] = {}  # trial id -> (step, row columns) of its last result

    def set_search_properties(self, metric, mode, **spec) -> bool:
        return True  # metric and mode come from the spec's scheduler section

    def on_trial_add(self, tune_controller, trial) -> None:
        self._register(trial)

    def on_trial_result(self, tune_controller, trial, result: dict) -> str:
        self._rows.pop(trial.trial_id, None)
        step, value = result.get(self.time_attr), result.get(self._metric)
        if not isinstance(step, (int, float)) or not isinstance(value, (int, float)) or not math.isfinite(value):
            return TrialScheduler.CONTINUE  # a non-finite loss ends the trial by itself (diverged)
        key = self._register(trial)
        self._curves[trial.trial_id][float(step)] = self._sign * float(value)
        if key in self._stopped:
            self._rows[trial.trial_id] = (step, {"stop_reason": self._stopped[key]})
            return TrialScheduler.STOP
        if not self._update(trial.trial_id, key):
            return TrialScheduler.CONTINUE
        pred, lo, hi = self._summary[key]
        columns = self._columns(pred, lo, hi)
        self._rows[trial.trial_id] = (step, columns)
        if step < self.grace_period or step >= self.max_t:
            return TrialScheduler.CONTINUE
        rival = self._best_other(key)
        if rival is None or lo <= self._summary[rival][2]:
            return TrialScheduler.CONTINUE
        best_hi = self._sign * self._summary[rival][2]
        optimistic = columns["curve_lo"] if self._sign > 0 else columns["curve_hi"]
        reason = (
            f"curve: at step {step:g} the optimistic end of {self._metric}'s {self.interval:.0%} interval for step "
            f"{self.max_t} ({optimistic:.4g}) is worse than the pessimistic end for configuration {rival} "
            f"({best_hi:.4g}); predicted {columns['curve_pred']:.4g}"
        )
        self._stopped[key] = reason
        columns["stop_reason"] = reason
        return TrialScheduler.STOP

    def on_trial_complete(self, tune_controller, trial, result: dict | None) -> None:
        pass  # the last result was seen by on_trial_result; a finished curve predicts itself

    def row_columns(self, trial_id: str, result: dict) -> dict:
        """The prediction made for this result of this trial (empty when none was made)."""
        step, columns = self._rows.get(trial_id, (None, {}))
        return dict(columns) if step is not None and step == result.get(self.time_attr) else {}

    def prediction(self, configuration: str) -> tuple[float, float, float] | None:
        """(predicted final, lo, hi) of a configuration, in the metric's units."""
        if configuration not in self._summary:
            return None
        columns = self._columns(*self._summary[configuration])
        return columns["curve_pred"], columns["curve_lo"], columns["curve_hi"]

    def _register(self, trial) -> str:
        key = self._configuration.get(trial.trial_id)
        if key is None:
            key = self._configuration[trial.trial_id] = self.group(trial)
            self._members.setdefault(key, {})[trial.trial_id] = None
            self._curves[trial.trial_id] = {}
        return key

    def _update(self, trial_id: str, key: str) -> bool:
        """Refit this trial's curve; the configuration's summary is the mean over its fitted seeds."""
        curve = self._curves[trial_id]
        if len(curve) >= self.min_points:
            steps = sorted(curve)
            self._members[key][trial_id] = predict_final(
                steps, [curve[s] for s in steps], self.max_t, interval=self.interval, resamples=self.resamples,
                seed=len(steps))
        fitted = [p for p in self._members[key].values() if p is not None]
        if not fitted:
            return False
        self._summary[key] = mean_prediction(fitted, self.interval)
        return True

    def _best_other(self, key: str) -> str | None:
        """The other configuration with the best (lowest, signed) pessimistic end."""
        others = [(hi, k) for k, (_, _, hi) in self._summary.items() if k != key]
        return min(others)[1] if others else None

    def _columns(self, pred: float, lo: float, hi: float) -> dict:
        if self._sign > 0:
            return {"curve_pred": pred, "curve_lo": lo, "curve_hi": hi}
        return {"curve_pred": -pred, "curve_lo": -hi, "curve_hi": -lo}

    def debug_string(self) -> str:
        return f"Using CurveScheduler: {len(self._stopped)} configurations stopped of {len(self._members)}."
