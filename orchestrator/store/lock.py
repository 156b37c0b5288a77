"""Keeping two compactions of one experiment apart, on a local disk or an object store.

Locally a ``filelock`` lock file does it exactly. An object store has no lock primitive that
pyarrow exposes, so there the lock is an object, ``.compact.lock``, holding a random token:
a compaction that finds a fresh one refuses to start; one that writes its own reads it back
and goes ahead only if its token is still there (S3 and GCS read back what was last
written). Two compactions starting within the same instant can still both proceed; they
then leave two sets of compacted files holding the same rows, which lorasweep's readers
deduplicate and the next compaction merges, so no row is lost either way. A lock older than
``STALE_LOCK_S`` was left by a compaction that died and is taken over.
"""
from __future__ import annotations

import contextlib
import json
import time
import uuid

import filelock
import pyarrow.fs as pafs

from orchestrator.errors import UsageError
from orchestrator.store.location import Location

LOCK_NAME = ".compact.lock"
STALE_LOCK_S = 3600.0


@contextlib.contextmanager
def compaction_lock(location: Location, directory: str, experiment: str):
    path = f"{directory.rstrip('/')}/{LOCK_NAME}"
    if location.local:
        lock = filelock.FileLock(path, timeout=0)
        try:
            with lock:
                yield
        except filelock.Timeout:
            raise UsageError(f"experiment={experiment}: another compaction is running (lock {lock.lock_file})") from None
        return
    token = uuid.uuid4().hex
    _take(location, path, token, experiment)
    try:
        yield
    finally:
        with contextlib.suppress(OSError):
            if _read(location, path).get("token") == token:
                location.filesystem.delete_file(path)


def _take(location: Location, path: str, token: str, experiment: str) -> None:
    held = _read(location, path)
    if held and time.time() - float(held.get("since", 0)) < STALE_LOCK_S:
        raise UsageError(f"experiment={experiment}: another compaction is running (lock {location.name_of(path)}, "
                         f"taken {time.time() - float(held['since']):.0f} s ago)")
    with location.filesystem.open_output_stream(path) as out:
        out.write(json.dumps({"token": token, "since": time.time()}).encode())
    if _read(location, path).get("token") != token:
        raise UsageError(f"experiment={experiment}: another compaction is running (lock {location.name_of(path)})")


def _read(location: Location, path: str) -> dict:
    if location.info(path).type != pafs.FileType.File:
        return {}
    try:
        with location.filesystem.open_input_stream(path) as stream:
            return json.loads(stream.read().decode() or "{}")
    except (OSError, ValueError):
        return {}
