"""Checks that a sweep's results land somewhere that outlives it and that every node reaches.

- Inside a Ray job (``ray job submit``) the driver runs in a temporary copy of the working
  directory that Ray deletes later, so a relative ``results.path`` is refused there
  (:func:`check_durable`).
- On a cluster (``--address``) a local ``results.path`` or ``results.storage_path`` must be
  one filesystem seen by every node (trials upload checkpoints from wherever they run, and
  a retry may restart elsewhere): :func:`check_shared` writes a marker from the driver, has
  a Ray task pinned to each alive node read it and write one of its own, and reads those
  back. Nodes that fail either way are named in a UsageError (exit status 2) before any
  trial starts. URIs are shared by construction and not probed.
"""
from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path

from orchestrator.errors import UsageError
from orchestrator.store.location import scheme

MARKER_DIR = ".lorasweep-shared-check"
JOB_ENV = "RAY_JOB_CONFIG_JSON_ENV_VAR"  # set by Ray's job supervisor for a submitted entrypoint


def inside_ray_job() -> bool:
    """True in the entrypoint of ``ray job submit`` (or a working dir Ray unpacked for one)."""
    return JOB_ENV in os.environ or "/runtime_resources/" in os.getcwd().replace(os.sep, "/")


def check_durable(spec) -> None:
    """Refuse a relative results.path or results.storage_path inside a Ray job."""
    if not inside_ray_job():
        return
    problems = []
    for field, value in (("results.path", spec.results.path), ("results.storage_path", spec.results.storage_path)):
        if value and scheme(value) is None and not Path(value).expanduser().is_absolute():
            problems.append(
                f"{field}: {value!r} is relative, and inside a Ray job the working directory ({os.getcwd()}) is a "
                "temporary copy Ray deletes; allowed: an absolute path on storage every node shares, or a URI "
                f"(e.g. --set {field}=s3://<bucket>/lorasweep)"
            )
    if problems:
        raise UsageError(problems)


def local_paths(spec) -> list[str]:
    """The spec's storage locations that are paths on the nodes' filesystems (not URIs)."""
    from orchestrator.experiment import results_location, storage_path

    found = []
    for value in (results_location(spec), storage_path(spec)):
        kind = scheme(value)
        if kind in (None, "file"):
            path = value[len("file://"):] if kind == "file" else value
            if path not in found:
                found.append(path)
    return found


def check_shared(paths: list[str], timeout_s: float = 120.0) -> None:
    """Every alive Ray node sees the same files at each of ``paths`` (Ray must be connected)."""
    problems = []
    for path in paths:
        blind = _nodes_that_cannot_see(path, timeout_s)
        if blind:
            problems.append(
                f"{path}: not visible from every node ({'; '.join(blind)}); allowed: a filesystem mounted at the same "
                "path on every node (NFS, ...) or a URI (s3://, gs://, hdfs://)"
            )
    if problems:
        raise UsageError(problems)


def _nodes_that_cannot_see(path: str, timeout_s: float) -> list[str]:
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    token = uuid.uuid4().hex
    directory = Path(path) / MARKER_DIR / token
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "driver").write_text(token)
    probe = ray.remote(num_cpus=0, max_retries=0)(_probe)
    try:
        nodes = [n for n in ray.nodes() if n.get("Alive")]
        refs = {
            n["NodeID"]: probe.options(
                scheduling_strategy=NodeAffinitySchedulingStrategy(n["NodeID"], soft=False)
            ).remote(str(directory), token)
            for n in nodes
        }
        names = {n["NodeID"]: n.get("NodeManagerAddress", "?") for n in nodes}
        blind = []
        for node_id, ref in refs.items():
            label = f"node {names[node_id]} ({node_id[:12]})"
            try:
                saw = ray.get(ref, timeout=timeout_s)
            except Exception as exc:  # the task never ran there: say so, it is as good as blind
                blind.append(f"{label}: check failed: {type(exc).__name__}")
                continue
            if not saw:
                blind.append(f"{label} does not see the driver's files")
            elif _read(directory / node_id) != token:
                blind.append(f"{label} writes where the driver does not see it")
        return blind
    finally:
        shutil.rmtree(directory, ignore_errors=True)
        try:
            (Path(path) / MARKER_DIR).rmdir()
        except OSError:
            pass


def _probe(directory: str, token: str) -> bool:
    """On one node: read the driver's marker, then (only if it was there, so a blind node is
    left untouched) write this node's own."""
    import ray

    here = Path(directory)
    if _read(here / "driver") != token:
        return False
    try:
        (here / ray.get_runtime_context().get_node_id()).write_text(token)
    except OSError:
        pass
    return True


def _read(path: Path) -> str | None:
    try:
        return path.read_text()
    except OSError:
        return None
