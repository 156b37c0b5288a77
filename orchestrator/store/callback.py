"""The driver-side Tune callback that turns every reported evaluation into a stored row.

The last row of each trial is held back until the trial ends, so it can carry the trial's
final status (completed, stopped early, diverged, error); every earlier row is
``running``. A trial that fails before reporting anything still leaves an ``error`` row.

``attempt`` counts runs of one trial: a retry after a failure (``on_trial_recover``) adds
one, and so does a driver restart (``Tuner.restore`` re-creates trials under the same
trial_id but a fresh callback): the first time a trial is seen, the callback continues from
the highest attempt already stored for it, read once per callback from the experiment's
partition. Rows of the higher attempt win wherever rows are read.

A driver killed without warning loses no row: Tune snapshots the callback's state
(:meth:`get_state`) together with the trials' checkpoints, and each snapshot first flushes
every released row and carries the held-back ones. A resumed trial restarts from the
checkpoint the snapshot knows, so each step it reports again comes after every row that
was saved; rows written after the snapshot are reported again by a higher attempt, which
wins when rows are read.
"""
from __future__ import annotations

import datetime as dt
import logging
from typing import Callable

from ray.tune import Callback

from orchestrator.store.reader import stored_attempts
from orchestrator.store.schema import COLUMNS
from orchestrator.store.writer import ResultWriter

log = logging.getLogger(__name__)

# Set by the callback itself, never copied from a trial's result.
OWN_COLUMNS = ("trial_id", "attempt", "timestamp", "status", "error")
RESULT_COLUMNS = [c for c in COLUMNS if c not in OWN_COLUMNS]
TRIAL_END_FLUSH_INTERVAL_S = 1.0


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
        row_columns: Callable[[str, dict], dict] | None = None,
    ):
        self.root, self.experiment = root, experiment
        self.config_columns = config_columns
        self.total_steps = total_steps
        self.static = static or {}
        self.flush_rows, self.flush_seconds = flush_rows, flush_seconds
        self.row_columns = row_columns  # columns a scheduler decided for this result (curve scheduler)
        self._writer: ResultWriter | None = None
        self._pending: dict[str, dict] = {}
        self._attempts: dict[str, int] = {}
        self._stored: dict[str, int] | None = None  # highest stored attempt per trial
        self._columns: dict[str, dict] = {}  # driver-side columns per trial

    @property
    def writer(self) -> ResultWriter:
        if self._writer is None:  # created lazily: the callback is pickled with the experiment
            self._writer = ResultWriter(
                self.root, self.experiment, flush_rows=self.flush_rows, flush_seconds=self.flush_seconds
            )
        return self._writer

    def __getstate__(self):
        # Pickled into Ray's experiment state; a restored driver learns attempts from the store.
        state = dict(self.__dict__)
        state.update(_writer=None, _attempts={}, _stored=None, _columns={})
        return state

    def __setstate__(self, state):
        self.__dict__.update({"_stored": None, "_columns": {}, **state})

    def get_state(self) -> dict:
        """Tune's experiment snapshot: written rows are flushed, held-back rows travel in it."""
        self._flush()
        return {"pending": dict(self._pending)}

    def set_state(self, state: dict) -> None:
        self._pending = dict(state.get("pending", {}))

    def attempt(self, trial_id: str) -> int:
        """This trial's current attempt: one past the highest stored, when first seen."""
        if trial_id not in self._attempts:
            if self._stored is None:
                self._stored = self._read_stored_attempts()
            self._attempts[trial_id] = self._stored.get(trial_id, 0) + 1
        return self._attempts[trial_id]

    def on_trial_start(self, iteration, trials, trial, **info):
        self.attempt(trial.trial_id)

    def on_trial_recover(self, iteration, trials, trial, **info):
        self._release(trial, "running")
        self._attempts[trial.trial_id] = self.attempt(trial.trial_id) + 1

    def on_trial_result(self, iteration, trials, trial, result, **info):
        self._release(trial, "running")
        row = self._base_row(trial)
        # What the trial measured; the config's columns are the driver's and stay as they are.
        driver = self._driver_columns(trial)
        row.update({k: result[k] for k in RESULT_COLUMNS if k in result and k not in driver})
        if self.row_columns is not None:
            row.update(self.row_columns(trial.trial_id, result))
        row["status"] = "diverged" if result.get("diverged") else "running"
        self._pending[trial.trial_id] = row

    def on_trial_complete(self, iteration, trials, trial, **info):
        pending = self._pending.get(trial.trial_id)
        if pending is not None and pending["status"] != "diverged":
            finished = (pending.get("step") or 0) >= self.total_steps(trial.config)
            pending["status"] = "completed" if finished else "stopped"
        self._release(trial, None)
        # A finished trial's rows land at once, but a burst of short trials shares one file
        # a second instead of one file each (durability comes from get_state, not from here).
        if self.writer.seconds_since_flush() >= TRIAL_END_FLUSH_INTERVAL_S:
            self._flush()

    def on_trial_error(self, iteration, trials, trial, **info):
        message = _error_message(trial)
        row = self._pending.pop(trial.trial_id, None) or self._base_row(trial)
        row.update(status="error", error=message)
        self._append(row)
        self._flush()

    def on_experiment_end(self, trials, **info):
        for trial in trials:
            self._release(trial, None)
        self.writer.flush()  # the last chance: a failure here is raised, not logged

    def _release(self, trial, status: str | None) -> None:
        row = self._pending.pop(trial.trial_id, None)
        if row is not None:
            if status is not None and row["status"] != "diverged":
                row["status"] = status
            self._append(row)

    def _driver_columns(self, trial) -> dict:
        """The columns known on the driver: environment and the trial config's, computed once."""
        found = self._columns.get(trial.trial_id)
        if found is None:
            found = self._columns[trial.trial_id] = {**self.static, **self.config_columns(trial.config)}
        return found

    def _base_row(self, trial) -> dict:
        row = dict.fromkeys(COLUMNS)  # every column present: the writer's fast path
        row.update(self._driver_columns(trial))
        row.update(
            trial_id=trial.trial_id,
            attempt=self.attempt(trial.trial_id),
            timestamp=dt.datetime.now(dt.timezone.utc),
        )
        return row

    def _append(self, row: dict) -> None:
        try:
            self.writer.append(row)
        except OSError as exc:  # the rows stay buffered; the next flush tries again
            log.warning("result store %s: flush failed, will retry: %s", self.writer.directory, exc)

    def _flush(self) -> None:
        try:
            self.writer.flush()
        except OSError as exc:
            log.warning("result store %s: flush failed, will retry: %s", self.writer.directory, exc)

    def _read_stored_attempts(self) -> dict[str, int]:
        try:
            return stored_attempts(self.root, self.experiment)
        except Exception as exc:  # never stop a sweep over bookkeeping; attempts restart at 1
            log.warning("result store %s: cannot read stored attempts: %s", self.root, exc)
            return {}


class JournalBackup(Callback):
    """Copies the Optuna journal to the result storage at every experiment snapshot (when it
    grew), so a fresh driver can restore it (``orchestrator.store.journal``)."""

    def __init__(self, local: str, uri: str):
        self.local, self.uri = local, uri
        self._uploaded = -1

    def __getstate__(self):
        return {**self.__dict__, "_uploaded": -1}

    def get_state(self) -> dict:
        from pathlib import Path

        from orchestrator.store.journal import upload_journal

        path = Path(self.local)
        try:
            if path.exists() and path.stat().st_size != self._uploaded:
                self._uploaded = upload_journal(path, self.uri)
        except OSError as exc:  # the next snapshot tries again
            log.warning("Optuna journal: copy to %s failed, will retry: %s", self.uri, exc)
        return {}

    def set_state(self, state: dict) -> None:
        pass

    def on_experiment_end(self, trials, **info):
        self.get_state()


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
