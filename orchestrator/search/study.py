"""The Optuna study a sweep keeps: opened, created and checked in one place.

The study lives in a journal file (:func:`orchestrator.experiment.study_file`), so
``--resume`` and later runs of the same spec add to it instead of starting over. Optuna is
imported inside the functions: ``--dry-run`` only imports it when a journal exists.
"""
from __future__ import annotations

from pathlib import Path

from orchestrator.errors import UsageError


def open_storage(path: Path, backup: str | None = None):
    """The journal at ``path``; with ``backup`` (its copy in the result storage, see
    ``orchestrator.store.journal``) the copy is brought back first when it is newer."""
    import optuna

    if backup is not None:
        from orchestrator.store.journal import restore_journal

        restore_journal(path, backup)
    path.parent.mkdir(parents=True, exist_ok=True)
    return optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(path)))


def prepare_study(storage, name: str, metrics: list[str], modes: list[str]) -> None:
    """Create the study, or check that the stored one optimises the same metrics in the same
    directions: Optuna would silently load it with its old directions and reject results."""
    import optuna

    want = ["minimize" if m == "min" else "maximize" for m in modes]
    study = optuna.create_study(study_name=name, storage=storage, directions=want, load_if_exists=True)
    have_metrics = study.user_attrs.get("metrics")
    if have_metrics is None:
        study.set_user_attr("metrics", list(metrics))
        have_metrics = list(metrics)
    have = [d.name.lower() for d in study.directions]
    if have != want or have_metrics != list(metrics):
        raise UsageError(
            f"search.metric/search.mode: the Optuna study {name!r} in this experiment directory "
            f"optimises {have_metrics} ({', '.join(have)}), this spec asks for {list(metrics)} "
            f"({', '.join(want)}); allowed: the same metrics and modes, or a new search.study_name"
        )


def trial_count(path: Path, name: str) -> int | None:
    """How many trials the study ``name`` in the journal at ``path`` holds (None: no such study)."""
    import optuna

    try:
        return len(optuna.load_study(study_name=name, storage=open_storage(path)).trials)
    except KeyError:
        return None
