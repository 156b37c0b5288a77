"""Where a trial reports to: Ray Tune directly, or Ray Train (one trial, several workers).

The training loop only sees :class:`Session`, so the same loop runs in both places.
"""
from __future__ import annotations

import contextlib
import tempfile
from typing import Protocol


class Session(Protocol):
    def restore_dir(self) -> str | None:
        """A local directory holding the checkpoint to resume from, or None."""

    def report(self, metrics: dict, checkpoint_dir: str | None) -> None:
        """Report one evaluation with the checkpoint written to ``checkpoint_dir`` (None: no checkpoint)."""


class TuneSession:
    """A single-process trial: ``ray.tune.report`` / ``ray.tune.get_checkpoint``."""

    def __init__(self):
        self._stack = contextlib.ExitStack()

    def restore_dir(self) -> str | None:
        from ray import tune

        found = tune.get_checkpoint()
        if found is None:
            return None
        return self._stack.enter_context(found.as_directory())

    def report(self, metrics: dict, checkpoint_dir: str | None) -> None:
        from ray import tune

        found = None if checkpoint_dir is None else tune.Checkpoint.from_directory(checkpoint_dir)
        tune.report(metrics, checkpoint=found)


class TrainSession:
    """One Ray Train worker: every worker reports (its checkpoint shard); rank 0's metrics count."""

    def __init__(self):
        self._stack = contextlib.ExitStack()

    def restore_dir(self) -> str | None:
        import ray.train

        found = ray.train.get_checkpoint()
        if found is None:
            return None
        return self._stack.enter_context(found.as_directory())

    def report(self, metrics: dict, checkpoint_dir: str | None) -> None:
        import ray.train

        found = None if checkpoint_dir is None else ray.train.Checkpoint.from_directory(checkpoint_dir)
        ray.train.report(metrics, checkpoint=found)


class LocalSession:
    """Runs the trainable outside Ray (tests, benchmarks): keeps reports and the last checkpoint."""

    def __init__(self, restore_from: str | None = None):
        self.reports: list[dict] = []
        self.restore_from = restore_from
        self.last_checkpoint: str | None = None
        self._root = tempfile.mkdtemp(prefix="lorasweep-local-")

    def restore_dir(self) -> str | None:
        return self.restore_from

    def report(self, metrics: dict, checkpoint_dir: str | None) -> None:
        import shutil

        self.reports.append(dict(metrics))
        if checkpoint_dir is None:
            return
        target = f"{self._root}/step-{metrics['step']}"
        shutil.copytree(checkpoint_dir, target)
        self.last_checkpoint = target
