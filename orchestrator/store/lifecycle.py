"""What the sweep asks of the store around a run, in one place, so ``orchestrator.sweep``
needs only one-line hooks:

- :func:`before_run`: results must be durable inside a Ray job; on ``--resume`` the Optuna
  journal comes back from the result storage and the experiment's partition is compacted
  (one row per (trial, step) again after a killed driver);
- :func:`after_connect`: with ``--address``, local storage must be seen by every node;
- :func:`run_callbacks`: Tune callbacks beyond the row writer (the journal's copy);
- :func:`~orchestrator.store.compact.finalize_experiment`: compaction when ``fit()`` returns.
"""
from __future__ import annotations

from orchestrator.experiment import results_location, study_backup, study_file
from orchestrator.store.compact import finalize_experiment
from orchestrator.store.journal import restore_journal
from orchestrator.store.shared_check import check_durable, check_shared, local_paths

__all__ = ["after_connect", "before_run", "finalize_experiment", "run_callbacks"]


def before_run(spec, *, resume: bool) -> None:
    check_durable(spec)
    if resume:
        if spec.search.algorithm == "optuna":
            restore_journal(study_file(spec), study_backup(spec))
        finalize_experiment(results_location(spec), spec.name)


def after_connect(spec, address: str | None) -> None:
    if address:
        check_shared(local_paths(spec))


def run_callbacks(spec) -> list:
    backup = study_backup(spec)
    if backup is None or spec.search.algorithm != "optuna":
        return []
    from orchestrator.store.callback import JournalBackup

    return [JournalBackup(str(study_file(spec)), backup)]
