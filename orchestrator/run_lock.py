"""One writer per experiment: a lock held for a run's lifetime, and the embedded Ray a killed
run left behind.

The lock is an ``flock`` on ``<results>/_ray/<name>.lock``: the operating system releases it
when its holder dies, however it dies, so a lock left by a SIGKILLed driver is taken over by
the next run without any guessing. Beside it, ``<name>.owner.json`` says who holds it (pid,
host, start time) and which processes its embedded Ray started; a later run that finds the
owner dead stops those processes if they are still alive.
"""
from __future__ import annotations

import datetime as dt
import fcntl
import json
import os
import signal
import socket
from pathlib import Path

from orchestrator.errors import UsageError


class ExperimentLock:
    """``with ExperimentLock(directory, name):`` refuses (UsageError) while another run holds it."""

    def __init__(self, directory: str | Path, name: str):
        self.directory = Path(directory)
        self.name = name
        self.path = self.directory / f"{name}.lock"
        self.owner_path = self.directory / f"{name}.owner.json"
        self._fd: int | None = None
        self.stale: dict | None = None  # the owner record of a run that died holding the lock

    def __enter__(self) -> "ExperimentLock":
        self.directory.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            holder = _read(self.owner_path) or {}
            raise UsageError(
                f"experiment {self.name!r} is being run by another lorasweep run (pid {holder.get('pid', '?')} on "
                f"{holder.get('host', '?')}, since {holder.get('started', '?')}); allowed: wait for it, or run under "
                f"another name (--set name=...)"
            ) from None
        self._fd = fd
        previous = _read(self.owner_path)
        if previous and not previous.get("released"):
            self.stale = previous  # its holder died without releasing: the OS freed the lock
        self._write({"pid": os.getpid(), "host": socket.gethostname(),
                     "started": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), "ray_pids": []})
        return self

    def record_ray_processes(self, pids: list[int]) -> None:
        """Remember the embedded Ray's processes, for the next run if this one is killed."""
        owner = _read(self.owner_path) or {}
        owner["ray_pids"] = sorted(pids)
        self._write(owner)

    def __exit__(self, *exc) -> None:
        owner = _read(self.owner_path) or {}
        owner["released"] = True
        self._write(owner)
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def _write(self, record: dict) -> None:
        tmp = self.owner_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(record))
        tmp.replace(self.owner_path)


def stop_leftover_ray(stale: dict | None) -> list[int]:
    """Stop the embedded Ray processes a killed run on this host left running; their pids."""
    if not stale or stale.get("host") != socket.gethostname():
        return []
    stopped = []
    for pid in stale.get("ray_pids", []):
        if _is_ray_process(pid):
            try:
                os.kill(pid, signal.SIGTERM)
                stopped.append(pid)
            except ProcessLookupError:
                pass
    return stopped


def embedded_ray_pids() -> list[int]:
    """The processes of the Ray instance this driver started (empty when it joined a cluster)."""
    import ray

    node = getattr(ray._private.worker, "_global_node", None)
    if node is None or not getattr(node, "head", False):
        return []
    return [info.process.pid for infos in node.all_processes.values() for info in infos if info.process]


def _is_ray_process(pid: int) -> bool:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
    except OSError:
        return False
    return b"ray" in cmdline


def _read(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None
