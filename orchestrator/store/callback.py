"""The driver-side Tune callback that turns every reported evaluation into a stored row.

The last row of each trial is held back until the trial ends, so it can carry the trial's
final status (completed, stopped early, diverged, error); every earlier row is
``running``. A trial that fails before reporting anything still leaves an ``error`` row.
"""
from __future__ import annotations

import datetime as dt
from typing import Callable

from ray.tune import Callback

from orchestrator.store.schema import COLUMNS
from orchestrator.store.writer import ResultWriter


class StoreCallback(Callback):
    def __init__(
        self,
        root: str,
        experiment: str,
        *,
        config_columns: Callable[[dict], dict],
        total_steps: Callable[[dict], int],
        static: dict | None = None,
        flush_rows: int = 256,
        flush_seconds: float = 10.0,
    ):
        self.root, self.experiment = root, experiment
        self.config_columns = config_columns
        self.total_steps = total_steps
        self.static = static or {}
        self.flush_rows, self.flush_seconds = flush_rows, flush_seconds
        self._writer: ResultWriter | None = None
        self._pending: dict[str, dict] = {}
        self._attempts: dict[str, int] = {}

    @property
    def writer(self) -> ResultWriter:
        if self._writer is None:  # created lazily: the callback is pickled with the experiment
            self._writer = ResultWriter(
                self.root, self.experiment, flush_rows=self.flush_rows, flush_seconds=self.flush_seconds
            )
        return self._writer

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_writer"] = None
        return state

    def on_trial_start(self, iteration, trials, trial, **info):
        self._attempts.setdefault(trial.trial_id, 1)

    def on_trial_recover(self, iteration, trials, trial, **info):
        self._release(trial, "running")
        self._attempts[trial.trial_id] = self._attempts.get(trial.trial_id, 1) + 1

    def on_trial_result(self, iteration, trials, trial, result, **info):
        self._release(trial, "running")
        row = self._base_row(trial)
        row.update({k: result[k] for k in COLUMNS if k in result and k not in ("trial_id", "timestamp", "status")})
        row["status"] = "diverged" if result.get("diverged") else "running"
        self._pending[trial.trial_id] = row

    def on_trial_complete(self, iteration, trials, trial, **info):
        pending = self._pending.get(trial.trial_id)
        if pending is not None and pending["status"] != "diverged":
            finished = (pending.get("step") or 0) >= self.total_steps(trial.config)
            pending["status"] = "completed" if finished else "stopped"
        self._release(trial, None)
        self.writer.flush()

    def on_trial_error(self, iteration, trials, trial, **info):
        message = _error_message(trial)
        row = self._pending.pop(trial.trial_id, None) or self._base_row(trial)
        row.update(status="error", error=message)
        self.writer.append(row)
        self.writer.flush()

    def on_experiment_end(self, trials, **info):
        for trial in trials:
            self._release(trial, None)
        self.writer.flush()

    def _release(self, trial, status: str | None) -> None:
        row = self._pending.pop(trial.trial_id, None)
        if row is not None:
            if status is not None and row["status"] != "diverged":
                row["status"] = status
            self.writer.append(row)

    def _base_row(self, trial) -> dict:
        row = dict(self.static)
        row.update(self.config_columns(trial.config))
        row.update(
            trial_id=trial.trial_id,
            attempt=self._attempts.get(trial.trial_id, 1),
            timestamp=dt.datetime.now(dt.timezone.utc),
        )
        return row


def _error_message(trial) -> str:
    """The last line of the trial's traceback (its exception), full text kept in Ray's logs."""
    error = getattr(trial, "error_file", None)
    text = ""
    if error:
        try:
            with open(error) as f:
                text = f.read()
        except OSError:
            text = ""
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1][:2000] if lines else "trial failed (no error message recorded)"
